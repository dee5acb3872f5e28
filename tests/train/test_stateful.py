"""Stateful TBPTT over contiguous streams: layout, carried and detached state, whole-stream evaluation."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.data import TaskSpec
from rnnlab.data.text import encode_text
from rnnlab.models import build_model
from rnnlab.train import TrainConfig, evaluate_run, train
from rnnlab.train.stateful import StateCarrier, StreamBatchSampler, evaluate_stream, stream_loader

SPEC = TaskSpec("charlm", "lm", 0, 11, 11, [], 8, True)


def lm(name="lstm", **options):
    torch.manual_seed(0)
    return build_model(name, SPEC, hidden_size=12, num_layers=2, **options).eval()


def test_batches_are_consecutive_windows_of_parallel_streams():
    tokens = torch.arange(1000)  # token value = position: the layout can be read off the batch
    batches = list(stream_loader(tokens, 10, 4, training=True, seed=3))
    offset = int(batches[0].x[0, 0])
    stream_length = (1000 - 1 - offset) // 4
    assert 0 <= offset <= 10 and len(batches) == stream_length // 10
    for k, batch in enumerate(batches):
        assert batch.x.shape == (4, 10)
        for b in range(4):
            start = offset + b * stream_length + k * 10
            assert batch.x[b].tolist() == list(range(start, start + 10))
            assert batch.y[b].tolist() == list(range(start + 1, start + 11))
    # streams do not overlap, and stay inside the text
    assert int(batches[-1].y.max()) <= 999
    assert int(batches[-1].x[0, -1]) < int(batches[0].x[1, 0])


def test_offset_is_a_function_of_seed_and_epoch():
    def offsets(seed):
        sampler = StreamBatchSampler(5000, 50, 8, seed=seed)
        found = []
        for epoch in range(6):
            sampler.set_epoch(epoch)
            found.append(next(iter(sampler))[0])
        return found

    assert offsets(1) == offsets(1)
    assert len(set(offsets(1))) > 1  # a new starting point across epochs
    assert StreamBatchSampler(5000, 50, 8, shuffle_offset=False).offset() == 0


def test_processes_take_disjoint_streams():
    first = [list(StreamBatchSampler(999, 10, 4, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    starts = [{s for batch in shard for s in batch} for shard in first]
    assert not starts[0] & starts[1] and all(len(batch) == 4 for shard in first for batch in shard)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_carried_state_is_detached_and_continues_the_stream(name):
    model = lm(name)
    tokens = torch.randint(1, 11, (3, 16))
    carrier = StateCarrier()
    with torch.no_grad():
        whole = model(tokens)
    model.train(False)
    first = carrier.output(model, tokens[:, :8])
    parts = [carrier.state] if torch.is_tensor(carrier.state) else list(carrier.state)
    assert all(not part.requires_grad for part in parts)
    second = carrier.output(model, tokens[:, 8:])
    second.sum().backward()  # gradients stop at the window edge: no error, no graph into batch 1
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)
    carrier.reset()
    assert carrier.state is None


def test_transformer_reads_each_window_alone():
    torch.manual_seed(0)
    model = build_model("transformer", SPEC, hidden_size=16, num_layers=1).eval()
    tokens = torch.randint(1, 11, (2, 8))
    carrier = StateCarrier()
    carrier.output(model, tokens)
    assert carrier.state is None
    assert torch.allclose(carrier.output(model, tokens), model(tokens))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_stateful_evaluation_equals_one_pass_over_the_whole_stream(name):
    model = lm(name)
    tokens = torch.randint(0, 11, (437,))
    metrics = evaluate_stream(model, tokens, SPEC, {}, window=50)
    with torch.no_grad():
        logits = model(tokens[None, :-1])[0]
    nats = F.cross_entropy(logits, tokens[1:]).item()  # reference: one pass, no windows
    assert metrics["bpc"] == pytest.approx(nats / math.log(2), abs=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(nats), rel=1e-5)


def test_charlm_run_trains_on_streams_and_reports_bpc_with_baselines(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat; the dog ate the log. " * 40, encoding="utf-8")
    result = train(
        TrainConfig(
            task="charlm",
            data=str(text),
            model="lstm",
            hidden_size=16,
            seq_len=20,
            epochs=1,
            batch_size=8,
            out=str(tmp_path / "run"),
        )
    )
    metrics = result.summary["test_metrics"]
    train_targets = len(result.task_data.train.tokens) - 1
    # one epoch: K = S // T batches of 8 streams, S = (N − 1 − o) // 8, whatever the offset o ∈ [0, 20]
    assert result.summary["steps"] in {(train_targets - o) // 8 // 20 for o in range(21)}
    assert {"bpc", "perplexity", "unigram_bpc", "bigram_bpc"} <= set(metrics)
    # the test figure is the stateful whole-stream one
    reference = evaluate_stream(
        result.model, result.task_data.test.tokens, result.task_data.spec, result.task_data.meta
    )
    assert metrics["bpc"] == pytest.approx(reference["bpc"], abs=1e-6)
    assert result.config.dropout == 0.2  # the charlm default

    # a new text is read with the run's vocabulary: one full pass over it is the reference
    other = tmp_path / "other.txt"
    other.write_text("a cat ate the log; the mat sat on the dog. " * 5, encoding="utf-8")
    scored = evaluate_run(result.dir, str(other))
    tokens = encode_text(result.task_data.meta["vocab"], other.read_text(encoding="utf-8"))
    with torch.no_grad():
        logits = result.model.eval()(tokens[None, :-1])[0]
    assert scored["bpc"] == pytest.approx(F.cross_entropy(logits, tokens[1:]).item() / math.log(2), abs=1e-5)
