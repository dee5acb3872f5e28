"""The grid: names checked with nearest-name hints, lengths and seeds parsed strictly, budgets filled in."""

from __future__ import annotations

import pytest

from rnnlab.errors import ConfigError
from rnnlab.lab.grid import (
    BUDGETS,
    DEFAULT_MODELS,
    Cell,
    CompareConfig,
    config_from_dict,
    parse_lengths,
    parse_seeds,
    resolve,
    slug,
)


def test_no_arguments_is_the_long_range_study():
    experiment = resolve(CompareConfig())
    assert experiment.recipe["task"] == "recall"
    assert experiment.models == ["rnn", "lstm", "gru", "lstm+attn", "tcn", "transformer"] == list(DEFAULT_MODELS)
    assert experiment.lengths[0] == 10 and experiment.lengths[-1] == 1000
    assert experiment.recipe["budget"] == "standard"
    # one parameter budget for every model
    assert experiment.recipe["params"] == BUDGETS["standard"].params


def test_quick_budget_is_small_enough_for_ten_minutes():
    quick = resolve(CompareConfig(budget="quick"))
    cells = quick.cells
    # 6 models × 3 lengths × 1 seed, each capped: the cap bounds the wall time on 2 workers
    assert len(cells) == 18 and quick.lengths == [10, 50, 100] and quick.seeds == [0]
    assert len(cells) / 2 * quick.recipe["max_minutes"] <= 6.0


def test_unknown_model_names_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown model 'lstn'; did you mean 'lstm'"):
        resolve(CompareConfig(models=["rnn", "lstn"]))


def test_unknown_task_names_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown task 'recal'; did you mean 'recall'"):
        resolve(CompareConfig(task="recal"))


def test_unknown_budget_and_executor_are_refused():
    with pytest.raises(ConfigError, match="unknown budget 'quik'; did you mean 'quick'"):
        resolve(CompareConfig(budget="quik"))
    with pytest.raises(ConfigError, match="unknown executor 'rey'; did you mean 'ray'"):
        resolve(CompareConfig(executor="rey"))
    with pytest.raises(ConfigError, match="add --executor ray"):
        resolve(CompareConfig(address="127.0.0.1:6379"))


@pytest.mark.parametrize(
    "text, item, bad",
    [("10,-5", 2, "-5"), ("10,abc", 2, "abc"), ("0", 1, "0"), ("10,2.5", 2, "2.5"), ("10,,20", 2, "")],
)
def test_lengths_must_be_positive_integers(text, item, bad):
    with pytest.raises(ConfigError, match=f"item {item} is {bad!r}"):
        parse_lengths(text)


def test_lengths_in_the_python_api_are_checked_too():
    with pytest.raises(ConfigError, match="item 2 is 0"):
        resolve(CompareConfig(lengths=[10, 0]))
    with pytest.raises(ConfigError, match="item 1 is '10'"):
        resolve(CompareConfig(lengths=["10"]))
    with pytest.raises(ConfigError, match="each length once"):
        resolve(CompareConfig(lengths=[10, 10]))


def test_lengths_are_refused_where_the_data_sets_them():
    with pytest.raises(ConfigError, match="takes its sequence lengths from the data"):
        resolve(CompareConfig(task="classify", lengths=[10]))
    # real data without --lengths: one column of cells at the data's own length
    assert resolve(CompareConfig(task="classify")).lengths == [None]
    assert resolve(CompareConfig(task="forecast", lengths=[24, 72])).lengths == [24, 72]


def test_seeds_count_or_list():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,4,7") == [0, 4, 7]
    with pytest.raises(ConfigError, match="item 2 is 'x'"):
        parse_seeds("1,x")
    with pytest.raises(ConfigError, match=">= 1"):
        parse_seeds("0")


def test_cell_keys_are_unique_and_file_safe():
    experiment = resolve(CompareConfig(models=["lstm", "lstm+attn", "gru+attn"], lengths=[5, 50], seeds=[0, 1]))
    keys = [cell.key for cell in experiment.cells]
    assert len(set(keys)) == len(keys) == 12
    assert Cell("lstm+attn", 50, 1).key == "lstm-attn__T50__s1"
    assert Cell("lstm", None, 0).key == "lstm__Tnative__s0"
    assert all("/" not in key and "+" not in key for key in keys)
    assert slug("LSTM+Attn") == "lstm-attn"


def test_shortest_lengths_run_first():
    experiment = resolve(CompareConfig(models=["rnn", "lstm"], lengths=[100, 10], seeds=[0]))
    assert [cell.length for cell in experiment.cells] == [10, 10, 100, 100]


def test_recipe_changes_with_the_data_file(tmp_path):
    data = tmp_path / "series.csv"
    data.write_text("time,value\n1,2\n")
    first = resolve(CompareConfig(task="forecast", data=str(data))).recipe
    data.write_text("time,value\n1,3\n")
    second = resolve(CompareConfig(task="forecast", data=str(data))).recipe
    assert first["data_sha256"] != second["data_sha256"]


def test_the_forecast_data_flags_are_data_options_of_the_recipe():
    flagged = CompareConfig(task="forecast", target="load", horizon=3, data_options={"val_fraction": 0.2})
    by_hand = CompareConfig(task="forecast", data_options={"target": "load", "horizon": 3, "val_fraction": 0.2})
    assert resolve(flagged).recipe == resolve(by_hand).recipe
    assert resolve(flagged).recipe["data_options"] == {"horizon": 3, "target": "load", "val_fraction": 0.2}


def test_the_stop_level_keeps_its_recipe_key_and_its_old_name_in_a_dict():
    # experiment.json's recipe key stays "target_metric": a folder written before #17 is the same experiment
    assert resolve(CompareConfig(stop_at=0.5)).recipe["target_metric"] == 0.5
    assert config_from_dict({"target_metric": 0.5}) == CompareConfig(stop_at=0.5)
    with pytest.raises(ConfigError, match="stop_at must be a finite number; got inf"):
        resolve(CompareConfig(stop_at=float("inf")))
