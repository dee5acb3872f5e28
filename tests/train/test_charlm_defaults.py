"""charlm's defaults: the cosine schedule anneals to the run's budget, steps or time, whichever ends first."""

import math

import pytest

from rnnlab.train import TrainConfig
from rnnlab.train.module import CosineWithWarmup


def by_hand(progress, floor=0.01):
    return floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2


def test_cosine_reaches_its_floor_at_the_steps_the_time_budget_allows():
    schedule = CosineWithWarmup(0, 1000, measuring=True)
    assert schedule(0) == pytest.approx(1.0) and schedule(5) == pytest.approx(by_hand(0.005))
    schedule.fix_horizon(20, measured_at=10)  # after 10 steps the budget is seen to allow 20
    assert not schedule.measuring and schedule.horizon == 20
    assert schedule(10) == pytest.approx(by_hand(0.5))
    assert schedule(20) == pytest.approx(0.01) and schedule(30) == pytest.approx(0.01)  # past it: the floor
    restored = CosineWithWarmup(0, 1000)
    restored.load_state_dict(schedule.state_dict())  # a resumed run keeps the measured horizon
    assert [restored(t) for t in (0, 10, 25)] == [schedule(t) for t in (0, 10, 25)]


def test_an_ample_time_budget_leaves_the_cosine_on_the_steps():
    schedule = CosineWithWarmup(0, 1000, measuring=True)
    schedule.fix_horizon(10**6, measured_at=100)  # the budget allows more steps than the epochs have
    assert schedule.horizon == 1000 and schedule(250) == pytest.approx(by_hand(0.25))
    assert CosineWithWarmup(0, 1000)(250) == pytest.approx(by_hand(0.25))  # no budget at all


def test_charlm_anneals_by_default_other_tasks_keep_plateau_and_a_given_schedule_is_kept():
    assert TrainConfig(task="charlm").resolved().schedule == "cosine"
    assert TrainConfig(task="forecast").resolved().schedule == "plateau"
    assert TrainConfig(task="charlm", schedule="plateau").resolved().schedule == "plateau"
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(task="charlm", schedule="cosin").validate()


def test_a_charlm_run_with_a_time_budget_checkpoints_its_cosine_schedule_and_finishes(tmp_path):
    # The JSON checkpoint written after every epoch holds the schedule's measured horizon, not the
    # schedule object (it once failed: "cannot store a builtins.function at
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


def small_budgeted_run(tmp_path, name, **changes):
    from rnnlab.train import train

    values = dict(task="recall", seq_len=6, hidden_size=8, num_layers=1, batch_size=16, schedule="cosine")
    values.update(data_options={"n_train": 64, "n_val": 16, "n_test": 16}, patience=None, out=str(tmp_path / name))
    return train(TrainConfig(**{**values, **changes}))


def test_a_run_whose_time_budget_is_ample_is_reproducible_bit_for_bit(tmp_path):
    first, second = (small_budgeted_run(tmp_path, name, epochs=6, max_minutes=600) for name in ("a", "b"))
    assert first.summary["schedule"]["set_by"] == "epochs" and first.summary["schedule"]["measured_at_step"] > 0
    assert not first.summary["time_budget_ended"] and first.summary["stop_reason"] == "epochs done"
    assert (first.dir / "model.safetensors").read_bytes() == (second.dir / "model.safetensors").read_bytes()


def test_a_run_cut_by_its_time_budget_anneals_to_it_and_says_so(tmp_path):
    result = small_budgeted_run(tmp_path, "cut", epochs=100_000, steps_per_epoch=50, max_minutes=0.05, refit=False)
    summary = result.summary
    assert summary["time_budget_ended"] and summary["stop_reason"] == "time budget"
    assert summary["schedule"]["set_by"] == "time budget"
    assert summary["schedule"]["steps"] < summary["schedule"]["epochs_steps"]
