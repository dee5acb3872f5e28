"""charlm's defaults: the cosine schedule anneals to the run's budget, steps or time, whichever ends first."""

import math

import pytest

from rnnlab.train import TrainConfig
from rnnlab.train.module import CosineWithWarmup


def by_hand(progress, floor=0.01):
    return floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2


def test_cosine_reaches_its_floor_when_the_time_budget_runs_out_before_the_steps():
    seconds = [0.0]
    schedule = CosineWithWarmup(0, 1000, budget_seconds=100.0, clock=lambda: seconds[0])
    assert schedule(0) == pytest.approx(1.0)
    seconds[0] = 50.0  # half the time gone after 1% of the steps: the time sets the pace
    assert schedule(10) == pytest.approx(by_hand(0.5))
    seconds[0] = 100.0
    assert schedule(20) == pytest.approx(0.01)
    seconds[0] = 250.0  # past the budget (the last batch overruns it): stays at the floor
    assert schedule(30) == pytest.approx(0.01)
    seconds[0] = 10.0  # the steps run out first: they set the pace
    assert schedule(750) == pytest.approx(by_hand(0.75))


def test_without_a_time_budget_the_cosine_follows_the_steps():
    schedule = CosineWithWarmup(0, 1000, clock=lambda: 1e9)
    assert schedule(250) == pytest.approx(by_hand(0.25))


def test_charlm_anneals_by_default_other_tasks_keep_plateau_and_a_given_schedule_is_kept():
    assert TrainConfig(task="charlm").resolved().schedule == "cosine"
    assert TrainConfig(task="forecast").resolved().schedule == "plateau"
    assert TrainConfig(task="charlm", schedule="plateau").resolved().schedule == "plateau"
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(task="charlm", schedule="cosin").validate()


def test_a_charlm_run_with_a_time_budget_checkpoints_its_cosine_schedule_and_finishes(tmp_path):
    # The schedule reads the run's clock; the JSON checkpoint written after every epoch must not
    # try to hold that clock (it once failed: "cannot store a builtins.function at
    # /lr_schedulers/0/lr_lambdas/0/clock").
    from rnnlab.train import train

    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat; the dog ate the log. " * 40, encoding="utf-8")
    result = train(
        TrainConfig(
            task="charlm",
            data=str(text),
            model="lstm",
            hidden_size=16,
            seq_len=20,
            epochs=2,
            batch_size=8,
            max_minutes=5,
            out=str(tmp_path / "run"),
        )
    )
    assert result.summary["epochs"] == 2
    assert result.config.schedule == "cosine"
    assert (result.dir / "model.safetensors").exists()


def test_the_charlm_lstm_takes_its_measured_settings_and_other_models_keep_the_tasks():
    lstm = TrainConfig(task="charlm", model="lstm").resolved()
    assert lstm.lr == 3e-3
    assert lstm.model_options == {"embedding_dim": 64, "recurrent_dropout": 0.1}
    assert lstm.dropout == 0.2 and lstm.hidden_size == 256 and lstm.schedule == "cosine"
    gru = TrainConfig(task="charlm", model="gru").resolved()
    assert gru.lr == 2e-3 and gru.model_options == {}
    assert TrainConfig(task="forecast", model="lstm").resolved().model_options == {}


def test_a_users_own_lr_and_model_options_win_over_the_charlm_lstm_defaults():
    config = TrainConfig(
        task="charlm", model="lstm", lr=1e-3, model_options={"recurrent_dropout": 0.0, "zoneout": 0.1}
    ).resolved()
    assert config.lr == 1e-3
    assert config.model_options == {"embedding_dim": 64, "recurrent_dropout": 0.0, "zoneout": 0.1}
    # resolving the written-out config again (a resumed run) changes nothing
    assert config.resolved() == config
