"""Compiled CPU kernels for the recurrent loop, behind the same layers as the reference loop.

The layers of :mod:`rnnlab.layers` ask :func:`kernel_applies` whether a kernel fits their
configuration and, if so, run each layer and direction through :func:`run_recurrence` instead of
the loop over :mod:`rnnlab.cells`; everything else (stacking, directions, packing, dropout between
layers) stays the layer's. The loop remains the ground truth: the tests hold every kernel to it.

What runs where, chosen by measurement (``bench/kernels.py``; ``docs/kernels.md`` has the table):

* ``GRU`` (both conventions), ``RNN``, and every variant torch.nn lacks (layer norm, recurrent
  dropout, Cho's GRU) run the kernel: torch.nn's GRU and RNN step through a dozen ATen operations
  per time step with autograd recording each one, and the variants would otherwise run a Python
  loop. At batch 256, hidden 512, where the per-step GEMM dominates both, the kernel is within a
  tenth of torch.nn's speed (0.96–1.07× its CPU time in three runs; the RNN 0.86–1.06×); below
  that it is 2–3× faster; and it keeps its speed on a shared machine, where torch.nn's threads
  wait for each other at every step.
* A plain ``LSTM`` stays on torch.nn's kernel (oneDNN's LSTM on the CPU, as fast as ours).
* Zoneout, ``proj_size``, gate recording, autocast, tensors off the CPU, and tracing (ONNX export,
  TorchScript, torch.compile) keep their old paths.
* ``MinGRU`` / ``MinLSTM`` (:mod:`rnnlab.cells.min_rnn`) run each layer in one fused pass per row:
  input projection and scan block by block in cache, the projection recomputed in backward.

``RNNLAB_KERNELS=0`` switches the kernels off; :func:`status` says whether they are compiled.
"""

from __future__ import annotations

import torch

from rnnlab.kernels import build
from rnnlab.kernels.functions import fuses_input_norm, run_min_rnn, run_min_rnn_layer, run_recurrence

__all__ = [
    "fuses_input_norm",
    "kernel_applies",
    "kernel_paths",
    "min_rnn_kernel_applies",
    "run_min_rnn",
    "run_min_rnn_layer",
    "run_recurrence",
    "status",
]


def _tracing() -> bool:
    # ONNX export, TorchScript tracing and torch.compile record torch operations; a compiled
    # extension call is opaque to them, so they get the layers' ordinary paths.
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def status() -> str:
    """Whether the compiled kernels are switched off, cached, loaded or unavailable (and why)."""
    return build.status()


def kernel_applies(layer, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``layer`` (an rnnlab RNN/LSTM/GRU) should run this call on the compiled kernel.

    Cheap checks first, so a configuration the kernels never serve never triggers the build.
    """
    if not build.enabled() or device.type != "cpu" or dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu") or layer.zoneout > 0 or layer.proj_size > 0 or _tracing():
        return False
    needs_loop = layer.layer_norm or layer.convention == "cho" or (layer.training and layer.recurrent_dropout > 0)
    if not needs_loop and layer.cell_kind == "lstm":  # oneDNN's fused LSTM is as fast as ours
        return False
    return build.load() is not None


def min_rnn_kernel_applies(x_projection: torch.Tensor) -> bool:
    """Whether a minGRU / minLSTM scan over ``x_projection`` runs compiled (else the parallel scan)."""
    if not build.enabled() or x_projection.device.type != "cpu":
        return False
    if x_projection.dtype not in (torch.float32, torch.float64) or torch.is_autocast_enabled("cpu") or _tracing():
        return False
    return build.load() is not None


def kernel_paths() -> dict[str, str]:
    """For ``rnnlab info``: which implementation runs in each case, with the kernels' state."""
    state = status()
    ours = f"rnnlab C++ kernel ({state})"
    usable = build.enabled() and not state.startswith("unavailable")
    if not usable:
        return {"kernels": state}
    # the keys of rnnlab.layers.KERNEL_PATHS, whose entries these replace
    return {
        "gru": ours,
        "rnn": ours,
        "lstm": "torch.nn fused (_VF.lstm, oneDNN)",
        "+layer_norm/zoneout/recurrent_dropout": f"{ours}; with zoneout, rnnlab loop over cells",
        "gru convention='cho'": ours,
        "+weight_norm": "as without it, on the normalised weights",
        "mingru/minlstm": f"{ours}: input projection and scan fused, block by block in cache",
    }
