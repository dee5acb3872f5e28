"""TrainConfig: JSON round trip, task defaults, and refusals that name the field."""

import json

import pytest

from rnnlab.errors import ConfigError
from rnnlab.train import TrainConfig


def test_config_round_trips_through_json(tmp_path):
    config = TrainConfig(
        task="forecast",
        model="gru",
        data="traffic",
        lookback=48,
        horizon=12,
        lr=1e-3,
        recurrent_lr=1e-2,
        data_options={"val_fraction": 0.2},
        model_options={"embedding_dim": 8},
        bidirectional=False,
        stop_at=0.5,
    ).resolved()
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config


def test_resolved_fills_task_defaults_and_keeps_given_values():
    # the adding defaults the acceptance run used (docs/training.md): 6 epochs at batch 16, chrono init, hidden 64
    config = TrainConfig(task="adding", model="lstm", lr=5e-4).resolved()
    assert config.lr == 5e-4
    assert (config.epochs, config.batch_size, config.init, config.hidden_size, config.num_layers) == (
        6,
        16,
        "chrono",
        64,
        1,
    )
    assert (config.dropout, config.schedule) == (0.0, "plateau")


def test_a_models_own_measured_settings_replace_the_tasks_and_the_users_win():
    # docs/text-generation.md: the charlm LSTM trains at lr 3e-3 with embedding 64 and recurrent
    # dropout 0.1; the GRU keeps the task's lr 2e-3 and no model options
    lstm = TrainConfig(task="charlm", model="lstm").resolved()
    assert (lstm.lr, lstm.model_options) == (3e-3, {"embedding_dim": 64, "recurrent_dropout": 0.1})
    gru = TrainConfig(task="charlm", model="gru").resolved()
    assert (gru.lr, gru.model_options, gru.schedule, gru.dropout) == (2e-3, {}, "cosine", 0.2)
    mine = TrainConfig(task="charlm", model="lstm", lr=1e-3, model_options={"embedding_dim": 32}).resolved()
    assert (mine.lr, mine.model_options) == (1e-3, {"embedding_dim": 32, "recurrent_dropout": 0.1})


def test_budget_scales_default_epochs_only():
    # recall's 30 standard epochs: quick is a fifth (6), full three times (90); given epochs stay
    epochs = {
        budget: TrainConfig(task="recall", budget=budget).resolved().epochs for budget in ("quick", "standard", "full")
    }
    assert epochs == {"quick": 6, "standard": 30, "full": 90}
    assert TrainConfig(task="recall", budget="quick", epochs=7).resolved().epochs == 7
    assert TrainConfig(task="recall", budget="quick").resolved().batch_size == 64


def test_non_recurrent_models_get_no_recurrent_init():
    assert TrainConfig(task="recall", model="tcn").resolved().init is None
    with pytest.raises(ConfigError, match="init='chrono' sets recurrent weights; model 'tcn'"):
        TrainConfig(task="recall", model="tcn", init="chrono").validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "recal"}, "unknown task 'recal'; did you mean 'recall'"),
        ({"model": "lstn"}, "unknown model 'lstn'; did you mean 'lstm'"),
        ({"lr": -1.0}, "lr must be a positive number, got -1.0"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"precision": "16"}, "unknown precision '16'"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\), got 1.0"),
        ({"params": 1000, "hidden_size": 8}, "give params or hidden_size, not both"),
        ({"clip": float("nan")}, "clip must be a number ≥ 0, got nan"),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_unknown_field_in_a_mapping_suggests_the_nearest():
    with pytest.raises(ConfigError, match="unknown TrainConfig field 'learning_rat'"):
        TrainConfig.from_dict({"learning_rat": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"batchsize": 3})


def test_data_options_map_to_load_task_names():
    options = TrainConfig(
        task="forecast", target="flow", lookback=24, fill="ffill", data_options={"val_fraction": 0.1}
    ).load_options()
    assert options["target"] == "flow" and options["lookback"] == 24 and options["fill"] == "ffill"
    assert options["val_fraction"] == 0.1
    assert "label" not in options  # options left None are not passed: the data decides


def test_batches_bucket_by_length_when_padding_would_be_most_of_a_batch():
    config = TrainConfig(task="classify", model="gru")
    assert config.resolved(train_size=500, val_size=50, padding=0.7).bucket
    assert not config.resolved(train_size=500, val_size=50, padding=0.0).bucket
    assert not config.resolved().bucket  # generated data: no lengths measured
    assert not TrainConfig(task="classify", model="gru", bucket=False).resolved(train_size=500, padding=0.7).bucket
    assert not TrainConfig(task="music", model="gru", batch_size=1).resolved(train_size=500, padding=0.7).bucket


def test_a_config_json_written_before_the_renames_loads_with_todays_names(tmp_path):
    # config.json before #17: "target" was the stop level and "target_column" the forecast column
    old = {"task": "forecast", "model": "gru", "target": 0.3, "target_column": "flow", "init": None, "lookback": 24}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = TrainConfig.load(tmp_path / "config.json")
    assert config == TrainConfig(task="forecast", model="gru", stop_at=0.3, target="flow", init=None, lookback=24)
    assert config.load_options()["target"] == "flow"
    # a full one, as a run wrote it: every other field as it was
    written = TrainConfig(task="forecast", target="flow", stop_at=0.3).resolved().to_dict()
    written["target_column"], written["target"] = written.pop("target"), written.pop("stop_at")
    assert TrainConfig.from_dict(written) == TrainConfig(task="forecast", target="flow", stop_at=0.3).resolved()
    # no stop level and no column: a "target": null stays what it is in either spelling
    assert TrainConfig.from_dict({"target": None, "target_column": None}) == TrainConfig()


def test_init_has_one_vocabulary_and_auto_leaves_it_to_the_task():
    from rnnlab.lab.grid import INITS as COMPARE_INITS
    from rnnlab.train.config import INITS

    assert COMPARE_INITS is INITS and INITS == ("auto", "default", "orthogonal", "chrono")
    assert TrainConfig(task="adding").resolved().init == "chrono"  # TASK_DEFAULTS
    assert TrainConfig(task="tag").resolved().init == "orthogonal"
    assert TrainConfig(task="tag", init="default").resolved().model_arguments()["init"] is None  # torch's
    with pytest.raises(ConfigError, match="unknown init 'chrno'; did you mean 'chrono'"):
        TrainConfig(init="chrno").validate()


def test_a_number_given_as_target_says_the_stop_level_is_stop_at():
    with pytest.raises(ConfigError, match=r"target names the forecast target column\(s\).*stop_at"):
        TrainConfig(task="forecast", target=0.5).validate()
