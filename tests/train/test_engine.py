"""The training practice: parameter groups, clipping, schedule, early stopping, target, time budget,
bf16, gradient checkpointing, and what a run directory holds."""

import csv
import json
import math

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from rnnlab.train import TrainConfig, load_run, train
from rnnlab.train.module import CosineWithWarmup, parameter_groups


def tiny(out, **changes):
    values = dict(
        task="recall",
        model="lstm",
        seq_len=6,
        n_train=64,
        n_val=32,
        n_test=32,
        batch_size=16,
        hidden_size=8,
        num_layers=1,
        epochs=2,
        patience=None,
        out=str(out),
    )
    return TrainConfig(**{**values, **changes})


def test_recurrent_weights_get_their_own_learning_rate():
    model = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(3, 4, num_layers=2), "head": torch.nn.Linear(4, 2)})
    groups = parameter_groups(model, lr=1e-3, recurrent_lr=1e-2, weight_decay=0.0, decoupled=False)
    by_lr = {group["lr"]: {id(p) for p in group["params"]} for group in groups}
    recurrent = {id(model["rnn"].weight_hh_l0), id(model["rnn"].weight_hh_l1)}
    assert by_lr[1e-2] == recurrent
    assert by_lr[1e-3] == {id(p) for p in model.parameters()} - recurrent


def test_adamw_does_not_decay_biases():
    model = torch.nn.Linear(3, 2)
    groups = parameter_groups(model, lr=1e-3, recurrent_lr=None, weight_decay=0.1, decoupled=True)
    decay = {group["weight_decay"]: [p.dim() for p in group["params"]] for group in groups}
    assert decay == {0.0: [1], 0.1: [2]}


def test_cosine_schedule_with_warmup_by_hand():
    schedule = CosineWithWarmup(warmup_steps=4, total_steps=14, floor=0.0)
    assert [schedule(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.5)  # half way through the 10 decay steps: (1 + cos π/2) / 2
    assert schedule(14) == pytest.approx(0.0)


class GradientNorms(L.Callback):
    """The global gradient norm as the optimiser saw it (after clipping), for every step."""

    def __init__(self):
        self.norms = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_gradients_are_clipped_to_max_norm(tmp_path):
    clipped, free = GradientNorms(), GradientNorms()
    train(tiny(tmp_path / "clipped", clip=0.01), callbacks=[clipped])
    train(tiny(tmp_path / "free", clip=0.0), callbacks=[free])
    assert max(clipped.norms) <= 0.01 * (1 + 1e-4)
    assert max(free.norms) > 0.01  # the same run without clipping has larger gradients


def test_run_directory_holds_the_documented_files(tmp_path):
    result = train(tiny(tmp_path / "run", epochs=3))
    out = tmp_path / "run"
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_macro_f1",
        "val_cross_entropy",
        "lr",
        "seconds",
    ]
    assert all(math.isfinite(float(row[key])) for row in rows for key in ("train_loss", "val_loss", "lr"))
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "test_metrics",
        "num_parameters",
        "train_seconds",
        "epochs",
        "best_epoch",
        "epochs_to_target",
        "seconds_to_target",
        "seconds_per_step",
    ):
        assert key in summary
    assert summary["test_metrics"]["chance_accuracy"] == pytest.approx(1 / 8)  # the baseline beside the metric
    # The kept weights are those of the best validation epoch.
    best = max(rows, key=lambda row: float(row["val_accuracy"]))
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["val_metrics"]["accuracy"] == pytest.approx(float(best["val_accuracy"]), rel=1e-5)
    # load_run rebuilds the model from config.json + task.json and reads the weights with safetensors.
    config, model, task = load_run(out)
    assert config == result.config and task["model"] == "lstm"
    for name, tensor in load_file(out / "model.safetensors").items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    # lr so small that nothing changes: the metric of epoch 1 is never beaten
    summary = train(tiny(tmp_path / "run", epochs=10, patience=2, lr=1e-12)).summary
    assert summary["epochs"] == 3 and summary["best_epoch"] == 1
    assert summary["stop_reason"] == "no improvement of val accuracy for 2 epochs"


def test_target_stops_training_and_records_when_it_was_reached(tmp_path):
    summary = train(tiny(tmp_path / "run", epochs=10, stop_at=0.0)).summary
    assert summary["epochs"] == 1 and summary["epochs_to_target"] == 1
    assert 0 < summary["seconds_to_target"] <= summary["train_seconds"]
    assert summary["stop_reason"] == "target reached"


def test_time_budget_stops_training(tmp_path):
    summary = train(tiny(tmp_path / "run", epochs=1000, max_minutes=0.02)).summary
    assert summary["stop_reason"] == "time budget"
    assert summary["epochs"] < 1000 and summary["train_seconds"] < 1.2 * 60 * 0.02 + 5


class FirstStep(L.Callback):
    """Each parameter before training and after the first optimiser step."""

    def on_train_start(self, trainer, pl_module):
        self.before = {name: p.detach().clone() for name, p in pl_module.model.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.after = {name: p.detach().clone() for name, p in pl_module.model.named_parameters()}

    def largest_change(self, name):
        return float((self.after[name] - self.before[name]).abs().max())


def test_recurrent_lr_moves_w_hh_by_its_own_rate_in_training(tmp_path):
    # Adam's first step moves each weight by lr · g / (|g| + eps) ≈ lr wherever the gradient is not tiny,
    # so the largest change of a matrix after one step is its group's learning rate
    steps = FirstStep()
    train(tiny(tmp_path / "run", n_train=16, epochs=1, lr=1e-3, recurrent_lr=1e-2), callbacks=[steps])
    assert steps.largest_change("encoder.rnn.weight_hh_l0") == pytest.approx(1e-2, rel=1e-3)
    for name in ("encoder.rnn.weight_ih_l0", "encoder.rnn.bias_hh_l0", "head.linear.weight"):
        assert steps.largest_change(name) == pytest.approx(1e-3, rel=1e-3), name


def test_adamw_decays_matrices_apart_from_the_gradient_step_and_spares_biases(tmp_path):
    # decoupled decay (Loshchilov & Hutter): w ← w − lr·λ·w − lr·m̂/(√v̂ + ε), and |m̂/(√v̂ + ε)| ≤ 1 on
    # the first step; Adam's coupled L2 would fold λ·w into the gradient and never move a weight by > lr
    lr, decay = 1e-2, 10.0
    steps = FirstStep()
    train(tiny(tmp_path / "run", n_train=16, epochs=1, lr=lr, optimizer="adamw", weight_decay=decay), callbacks=[steps])
    for name in ("encoder.rnn.weight_ih_l0", "encoder.rnn.weight_hh_l0", "head.linear.weight"):
        before, after = steps.before[name], steps.after[name]
        gradient_step = after - before * (1 - lr * decay)
        assert float(gradient_step.abs().max()) <= lr * (1 + 1e-5), name
        assert float((after - before).abs().max()) > 2 * lr, name  # the decay moved it beyond any Adam step
    for name in ("encoder.rnn.bias_ih_l0", "head.linear.bias"):  # 1-d: not decayed
        assert steps.largest_change(name) <= lr * (1 + 1e-5), name


class LearningRates(L.Callback):
    """The learning rate each optimiser step used."""

    def __init__(self):
        self.rates = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cosine_schedule_sets_the_rate_of_every_step(tmp_path):
    # 3 epochs of 4 batches: 4 warm-up steps rising linearly to lr, then 8 steps of cosine decay from lr
    # towards lr / 100 (docs/text-generation.md: "down to 1% of the rate"); written out from that statement,
    # not from the code
    lr, used = 1e-3, LearningRates()
    train(tiny(tmp_path / "run", epochs=3, lr=lr, schedule="cosine", warmup_epochs=1.0), callbacks=[used])
    warmup = [lr * (step + 1) / 4 for step in range(4)]
    decay = [lr * (0.01 + 0.99 * (1 + math.cos(math.pi * step / 8)) / 2) for step in range(8)]
    assert used.rates == pytest.approx(warmup + decay, rel=1e-6)


class BatchLengths(L.Callback):
    def __init__(self):
        self.lengths = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lengths.append(sorted(batch.lengths.tolist()))


@pytest.mark.parametrize("bucket", [True, False])
def test_bucketing_batches_sequences_of_similar_length(tmp_path, bucket):
    # 96 dates of 8–71 characters fit one bucket pool (50 batches of 16): with --bucket the epoch's
    # batches are its lengths sorted and cut into sixes of 16; without, a shuffle mixes them
    batches = BatchLengths()
    train(
        TrainConfig(
            task="seq2seq",
            model="lstm+attn",
            n_train=96,
            n_val=16,
            n_test=16,
            batch_size=16,
            hidden_size=8,
            num_layers=1,
            epochs=1,
            patience=None,
            bucket=bucket,
            out=str(tmp_path / "run"),
        ),
        callbacks=[batches],
    )
    every = sorted(length for batch in batches.lengths for length in batch)
    sorted_and_cut = [every[start : start + 16] for start in range(0, 96, 16)]
    assert (sorted(batches.lengths) == sorted_and_cut) is bucket


class OutputTypes(L.Callback):
    """The dtype of each LSTM's and each Linear's output in the training steps."""

    def __init__(self):
        self.dtypes, self.recording = {}, False

    def on_train_start(self, trainer, pl_module):
        for module in pl_module.model.modules():
            if isinstance(module, (torch.nn.LSTM, torch.nn.Linear)):
                kind = "LSTM" if isinstance(module, torch.nn.LSTM) else "Linear"
                module.register_forward_hook(lambda module, args, output, kind=kind: self.record(kind, output))

    def record(self, kind, output):
        if self.recording:
            self.dtypes.setdefault(kind, set()).add((output[0] if isinstance(output, tuple) else output).dtype)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.recording = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.recording = False


@pytest.mark.parametrize(
    ("precision", "lstm", "linear"), [("bf16", torch.float32, torch.bfloat16), ("32", torch.float32, torch.float32)]
)
def test_bf16_autocasts_the_other_layers_and_keeps_the_lstm_recurrence_in_float32(
    tmp_path, monkeypatch, precision, lstm, linear
):
    # the CPU path without bf16 LSTM kernels (the AVX2 machines): forced, so every CPU tests it
    from rnnlab.train import module

    monkeypatch.setattr(module, "_cpu_runs_bf16_lstm", lambda: False)
    types = OutputTypes()
    train(tiny(tmp_path / "run", epochs=1, precision=precision), callbacks=[types])
    assert types.dtypes == {"LSTM": {lstm}, "Linear": {linear}}


def test_plateau_schedule_halves_the_rate_when_the_metric_stalls(tmp_path):
    train(tiny(tmp_path / "run", epochs=5, patience=2, lr=1e-12))  # plateau patience = patience // 2 = 1
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert rates == pytest.approx([1e-12, 1e-12, 5e-13])


def test_same_seed_gives_the_same_run_and_another_seed_does_not(tmp_path):
    first = train(tiny(tmp_path / "a", dropout=0.2))
    again = train(tiny(tmp_path / "b", dropout=0.2))
    train(tiny(tmp_path / "c", dropout=0.2, seed=1))
    weights = [(tmp_path / name / "model.safetensors").read_bytes() for name in ("a", "b", "c")]
    assert weights[0] == weights[1] and weights[0] != weights[2]
    assert first.summary["test_metrics"] == again.summary["test_metrics"]


def test_init_and_gradient_checkpointing_reach_the_recurrent_layer(tmp_path):
    model = train(tiny(tmp_path / "run", init="chrono", gradient_checkpointing=True, epochs=1)).model
    layer = model.encoder.rnn
    assert layer.init == "chrono" and layer.gradient_checkpointing
    assert model.options["init"] == "chrono"
