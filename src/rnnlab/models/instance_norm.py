"""Instance normalisation of a forecast window (RevIN, Kim et al. 2022, without its affine map).

Each window is scaled by its own statistics before the encoder reads it, and the forecast is mapped
back with the statistics of the target channels (the first ``n_targets`` input channels):

    mu_c    = mean_t x[t, c]                     sigma_c = sqrt(var_t x[t, c] + EPSILON)
    x'[t, c] = (x[t, c] - mu_c) / sigma_c        the encoder and head see x'
    y[h, j]  = y'[h, j] · sigma_j + mu_j         for target j (input channel j)

so a series that trends past its training range is forecast in its own units: the model learns the
shape of what comes next, the window supplies the level and the scale. With an ``anchor`` of ``m``
steps the forecast starts from the seasonal-naive path instead of the window's mean,

    y[h, j]  = x[T + h − m·(⌊h/m⌋ + 1), j] + y'[h, j] · sigma_j        (m = 1: the last value)

or, with a ``smoothing`` ``α`` < 1 and ``m = 1``, from the window's exponentially smoothed level
(simple exponential smoothing, started at the window's first step ``x[1]``):

    l_1 = x[1],  l_t = α·x[t] + (1 − α)·l_{t−1}          y[h, j] = l_T[j] + y'[h, j] · sigma_j

i.e. ``l_T = Σ_t w_t x[t]`` with ``w_t = α(1 − α)^{T−t}`` for ``t > 1`` and ``w_1 = (1 − α)^{T−1}``
(``α = 1``: the last value). With the head started at zero the untrained model *is* that forecast: the network learns
the correction to it, which is what a short series leaves room for. The inputs are already
standard-scaled with the training statistics, so ``EPSILON`` (a floor on the variance in those units)
keeps a flat window (a night of solar generation) from dividing by zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPSILON = 1e-3


def instance_normalise(
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    n_targets: int,
    anchor: int | None = None,
    smoothing: float | None = None,
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(x', undo)``: ``x [B, T, F]`` scaled per window and channel over its valid steps, and the
    map that takes a forecast ``y' [B, horizon, n_targets]`` back to the units of ``x`` (around the
    window's mean, or with ``anchor`` around its seasonal-naive path or, ``smoothing`` given, its
    smoothed level)."""
    if lengths is None:
        mean = x.mean(dim=1, keepdim=True)
        variance = x.var(dim=1, unbiased=False, keepdim=True)
    else:
        valid = (torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1)
        mean = (x * valid).sum(dim=1, keepdim=True) / count
        variance = (((x - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    scale = torch.sqrt(variance + EPSILON)
    normalised = (x - mean) / scale

    def undo(y: torch.Tensor) -> torch.Tensor:
        if anchor is None:
            return y * scale[..., :n_targets] + mean[..., :n_targets]
        if anchor == 1 and smoothing is not None and smoothing < 1:
            return y * scale[..., :n_targets] + smoothed_level(x[..., :n_targets], lengths, smoothing)
        return y * scale[..., :n_targets] + seasonal_naive_path(x[..., :n_targets], lengths, y.size(1), anchor)

    return normalised, undo


def seasonal_naive_path(x: torch.Tensor, lengths: torch.Tensor | None, horizon: int, season: int) -> torch.Tensor:
    """``x[T + h − m·(⌊h/m⌋ + 1)]`` for ``h = 0 … horizon − 1`` with ``T`` each window's length: ``[B, horizon, F]``."""
    steps = torch.arange(horizon, device=x.device)
    back = season * (torch.div(steps, season, rounding_mode="floor") + 1) - steps  # steps before T: 1..m
    ends = torch.full((x.size(0),), x.size(1), device=x.device) if lengths is None else lengths.to(x.device)
    index = (ends[:, None] - back[None, :]).clamp(min=0)  # [B, horizon]
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.size(2)))


def smoothed_level(x: torch.Tensor, lengths: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """The simple-exponential-smoothing level ``l_T`` of each window (module docstring): ``[B, 1, F]``."""
    positions = torch.arange(x.size(1), device=x.device)
    ends = torch.full((x.size(0),), x.size(1), device=x.device) if lengths is None else lengths.to(x.device)
    age = (ends[:, None] - 1 - positions[None, :]).to(x.dtype)  # T − t: 0 at the last valid step
    weights = alpha * (1 - alpha) ** age
    weights = torch.where(positions[None, :] == 0, (1 - alpha) ** age, weights)
    weights = torch.where(age >= 0, weights, torch.zeros_like(weights))  # padding after the end
    return (weights[..., None] * x).sum(dim=1, keepdim=True)
