"""params=N: every model lands within 10% of the budget, and the width search is the closest."""

from __future__ import annotations

import pytest
from model_helpers import SPECS, fits

from rnnlab.models import build_model, count_parameters, model_heads, model_names
from rnnlab.models.sizing import fit_width


@pytest.mark.parametrize("budget", [20_000, 70_000, 300_000])
@pytest.mark.parametrize("name", model_names())
def test_every_model_lands_within_ten_percent_of_the_budget(name: str, budget: int) -> None:
    # a model for neither head (transformer-xl: lm only) is sized on the first head it fits
    heads = [head for head in ("classify", "forecast") if fits(name, head)] or [model_heads(name)[0]]
    for head in heads:
        model = build_model(name, SPECS[head], params=budget)
        count = count_parameters(model)
        assert abs(count - budget) <= 0.1 * budget, (head, count, model.options)


def test_fit_width_finds_the_closest_width_by_brute_force() -> None:
    def count_at(width: int) -> int:
        return 3 * width * width + 17 * width + 40

    for target in (1, 59, 60, 61, 1000, 12_345, 999_999):
        expected = min(range(1, 2000), key=lambda w: (abs(count_at(w) - target), w))
        assert fit_width(count_at, target) == expected, target


def test_width_is_the_closest_for_a_real_model() -> None:
    spec = SPECS["classify"]
    model = build_model("gru", spec, params=50_000)
    width = model.hidden_size
    neighbours = [count_parameters(build_model("gru", spec, hidden_size=w)) for w in (width - 1, width + 1)]
    assert all(abs(model.num_parameters - 50_000) <= abs(n - 50_000) for n in neighbours)


def test_a_budget_below_the_smallest_model_warns() -> None:
    with pytest.warns(
        UserWarning, match=r"params=100: the closest transformer for task 'recall' has [\d,]+ parameters"
    ):
        build_model("transformer", SPECS["classify"], params=100)
