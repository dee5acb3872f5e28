"""Transformer-XL (models/transformer_xl.py): the relative attention against its equation written out
per pair, causality through the memory, memory = one long pass within its span, the stateful
training contract, sizing and errors."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.errors import ConfigError
from rnnlab.models import build_model, count_parameters
from rnnlab.models.transformer import sinusoidal_positions
from rnnlab.models.transformer_xl import RelativeSelfAttention
from rnnlab.train.stateful import StateCarrier

LM = dict(task="charlm", head="lm", vocab_size=30, num_classes=30, seq_len=8)


def tiny(segment_len=8, mem_len=8, seed=0):
    torch.manual_seed(seed)
    return build_model(
        "transformer-xl", LM, hidden_size=16, num_heads=2, segment_len=segment_len, mem_len=mem_len
    ).eval()


def tokens(batch, length, seed=1):
    return torch.randint(0, 30, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_relative_attention_matches_its_equation_pair_by_pair():
    torch.manual_seed(0)
    attention = RelativeSelfAttention(8, 2, 0.0).double()
    with torch.no_grad():
        attention.content_bias.normal_()
        attention.position_bias.normal_()
    segment, memory = torch.randn(1, 3, 8, dtype=torch.float64), torch.randn(1, 4, 8, dtype=torch.float64)
    context = torch.cat([memory, segment], 1)[0]
    heads, size = 2, 4
    W_q, (W_k, W_v) = attention.query.weight, attention.key_value.weight.chunk(2)
    R = sinusoidal_positions(7, 8, torch.device("cpu"), torch.float64) @ attention.position.weight.T
    expected = torch.zeros(3, 8, dtype=torch.float64)
    with torch.no_grad():
        _write_reference(expected, attention, segment, context, W_q, W_k, W_v, R, heads, size)
        expected = expected @ attention.out.weight.T + attention.out.bias
        torch.testing.assert_close(attention(segment, memory)[0], expected)


def _write_reference(expected, attention, segment, context, W_q, W_k, W_v, R, heads, size):
    for head in range(heads):
        part = slice(head * size, (head + 1) * size)
        u, v_bias = attention.content_bias[head], attention.position_bias[head]
        for i in range(3):
            q_i = (W_q @ segment[0, i])[part]
            scores = []
            for j in range(7):
                if j > 4 + i:  # query i sits at 4 + i: later keys are masked
                    scores.append(float("-inf"))
                    continue
                k_j = (W_k @ context[j])[part]
                r = R[4 + i - j][part]
                scores.append(float((q_i + u) @ k_j + (q_i + v_bias) @ r) / math.sqrt(size))
            weights = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
            expected[i, part] = sum(weights[j] * (W_v @ context[j])[part] for j in range(7))


def test_output_at_t_does_not_depend_on_later_inputs_even_through_the_memory():
    model = tiny(segment_len=4, mem_len=8)
    x = tokens(2, 16)
    changed = x.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 30
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(after[:, :9], before[:, :9])
    assert not torch.allclose(after[:, 9:], before[:, 9:])
    # an early token reaches later segments through the memory
    early = x.clone()
    early[:, 1] = (early[:, 1] + 1) % 30
    with torch.no_grad():
        assert not torch.allclose(model(early)[:, 8:12], before[:, 8:12])


def test_memory_carried_between_calls_equals_one_long_pass_within_the_memory_span():
    carried = tiny(segment_len=8, mem_len=8)
    one_segment = tiny(segment_len=16, mem_len=8)
    one_segment.load_state_dict(carried.state_dict())
    x = tokens(3, 16)
    with torch.no_grad():
        first, memory = carried(x[:, :8], return_state=True)
        second, _ = carried(x[:, 8:], state=memory, return_state=True)
        whole = one_segment(x)  # one segment of 16: plain causal attention over all of it
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_without_memory_each_segment_starts_afresh():
    model = tiny(segment_len=8, mem_len=0)
    x = tokens(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, 8:], model(x[:, 8:]))


def test_the_memory_is_the_state_and_step_generation_continues_it():
    model = tiny(segment_len=8, mem_len=6)
    assert model.stateful and model.streamable
    x = tokens(2, 10)
    with torch.no_grad():
        output, memory = model(x, return_state=True)
        assert output.shape == (2, 10, 30) and memory.shape == (2, 2, 6, 16)  # [layers, B, mem_len, d]
        # one token at a time with the memory as the state: within the memory span, the same outputs
        state, steps = None, []
        for t in range(6):
            step_output, state = model.step(x[:, t], state)
            steps.append(step_output)
        torch.testing.assert_close(torch.stack(steps, 1), model(x[:, :6]))


def test_stateful_training_carries_the_memory_detached_between_batches():
    model = tiny(segment_len=8, mem_len=8).train()
    carrier = StateCarrier()
    x = tokens(4, 8)
    carrier.output(model, x)
    assert carrier.state.shape == (2, 4, 8, 16) and not carrier.state.requires_grad
    output = carrier.output(model, tokens(4, 8, seed=2))
    output.sum().backward()  # gradients stop at the memory: backward runs through this batch only
    assert model.encoder.embedding.weight.grad is not None


@pytest.mark.parametrize("budget", [150_000])
def test_params_sizes_the_model_within_ten_percent(budget):
    model = build_model("transformer-xl", LM, params=budget)
    assert abs(count_parameters(model) - budget) <= 0.1 * budget


def test_errors_name_the_task_the_padding_and_the_memory_shape():
    with pytest.raises(ConfigError, match=r"head lm.*task 'forecast' has head 'forecast'"):
        build_model(
            "transformer-xl", dict(task="forecast", head="forecast", input_size=1, output_shape=[2, 1], seq_len=5)
        )
    model = tiny()
    with pytest.raises(ConfigError, match=r"contiguous text.*from 5 to 8"):
        model(tokens(2, 8), torch.tensor([8, 5]))
    with pytest.raises(
        ConfigError, match=r"memory must be \[num_layers=2, batch=2, M, d_model=16\]; got shape \[2, 3, 4, 16\]"
    ):
        model(tokens(2, 8), state=torch.zeros(2, 3, 4, 16), return_state=True)
    with pytest.raises(ConfigError, match="mem_len must be an integer ≥ 0"):
        build_model("transformer-xl", LM, mem_len=-1)


@pytest.mark.parametrize("mode", ["sequence", "step"])
def test_onnx_export_is_refused_saying_why(tmp_path, mode):
    from rnnlab.export import export_onnx

    with pytest.raises(ConfigError, match="cannot be exported to ONNX: its state is a memory"):
        export_onnx(tiny(), tmp_path / "xl.onnx", mode=mode)
    assert not (tmp_path / "xl.onnx").exists()
