"""Causal models: the output at step t does not depend on the inputs after t (perturbation test)."""

from __future__ import annotations

import pytest
import torch
from model_helpers import SPECS, make_inputs, model_head_cases

from rnnlab.models import build_model

SEQ_LEN = 10


def _outputs_before_and_after_perturbing(model, spec, t: int):
    generator = torch.Generator().manual_seed(3)
    x = make_inputs(spec, 2, SEQ_LEN, generator)
    perturbed = x.clone()
    perturbed[:, t + 1 :] = make_inputs(spec, 2, SEQ_LEN - t - 1, generator)
    with torch.no_grad():
        return model(x), model(perturbed)


@pytest.mark.parametrize(("name", "head"), model_head_cases(["lm", "multilabel"]))
def test_causal_output_at_t_ignores_later_inputs(name: str, head: str) -> None:
    spec = SPECS[head]
    assert spec.causal
    torch.manual_seed(4)
    model = build_model(name, spec, hidden_size=8).eval()
    for t in (0, 4, SEQ_LEN - 2):
        original, perturbed = _outputs_before_and_after_perturbing(model, spec, t)
        torch.testing.assert_close(original[:, : t + 1], perturbed[:, : t + 1])
        # ...while the later outputs do see the change (the test can fail).
        assert not torch.allclose(original[:, t + 1 :], perturbed[:, t + 1 :])


@pytest.mark.parametrize("name", ["transformer", "lstm+attn"])
def test_non_causal_tagger_reads_later_inputs(name: str) -> None:
    """The same check fails for a tagger, which may look ahead: the perturbation test has teeth."""
    spec = SPECS["tag"]
    torch.manual_seed(5)
    model = build_model(name, spec, hidden_size=8).eval()
    original, perturbed = _outputs_before_and_after_perturbing(model, spec, 4)
    assert not torch.allclose(original[:, :5], perturbed[:, :5])


def test_unidirectional_transformer_is_causal_on_a_non_causal_task() -> None:
    spec = SPECS["tag"]
    model = build_model("transformer", spec, hidden_size=8, bidirectional=False).eval()
    original, perturbed = _outputs_before_and_after_perturbing(model, spec, 4)
    torch.testing.assert_close(original[:, :5], perturbed[:, :5])
