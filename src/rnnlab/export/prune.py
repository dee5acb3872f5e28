"""Magnitude pruning of the weight matrices, optionally followed by fine-tuning with the engine.

Pruning zeroes the fraction ``p`` of weights with the smallest magnitude (Han et al. 2015):

    keep_w = |w| > τ,   τ the p-quantile of |w|   over every prunable matrix  (scope "global")
                                                   or over each matrix alone  (scope "layer")

Prunable: the recurrent matrices ``W_ih``, ``W_hh`` of every layer and direction (the direction
``v`` under weight norm), linear and convolution weights. Biases, layer-norm gains, weight-norm
lengths and embedding tables are left alone (a bias or gain is one number per unit; an embedding
row is all a token has). A global threshold lets layers with many small weights give up more of
them; per layer, each matrix loses the same share.

Fine-tuning (:func:`finetune`) trains the pruned model a few epochs on its run's task through
:func:`rnnlab.train.train`, putting the zeros back after every optimiser step so pruned weights
stay pruned.

Zeros make a dense file no smaller and a dense kernel no faster; what pruning buys on a CPU is a
smaller *compressed* file (zeros compress) and room for sparse kernels. The report shows the
dense and the compressed sizes side by side, with the measured latency, so the trade is visible.
"""

from __future__ import annotations

import copy
import gzip
import io
from dataclasses import dataclass, field

import torch
from torch import nn

from rnnlab.errors import ConfigError, unknown_name
from rnnlab.layers import GRU, LSTM, RNN

SCOPES = ("global", "layer")


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name → parameter of every weight matrix pruning may touch (see the module docstring)."""
    found: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, (RNN, LSTM, GRU)):
            for name, parameter in module.named_parameters(recurse=False):
                if name.startswith(("weight_ih_l", "weight_hh_l")):
                    found[prefix + name] = parameter
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            parametrizations = getattr(module, "parametrizations", None)
            if parametrizations is not None and "weight" in parametrizations:
                # weight norm: W = g · v / ‖v‖; zeroing entries of the direction v zeroes them in W.
                found[prefix + "parametrizations.weight.original1"] = parametrizations.weight.original1
            elif isinstance(weight := getattr(module, "weight", None), nn.Parameter):
                found[prefix + "weight"] = weight
    return found


@dataclass
class PruneResult:
    """A pruned copy of a model, the masks that keep it pruned, and how sparse each matrix became."""

    model: nn.Module
    masks: dict[str, torch.Tensor]  # parameter name → True where the weight is kept
    fraction: float
    scope: str
    sparsity: dict[str, float] = field(default_factory=dict)  # parameter name → share of zeros

    @property
    def overall_sparsity(self) -> float:
        total = sum(mask.numel() for mask in self.masks.values())
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        return 1.0 - kept / total if total else 0.0


def check_fraction(fraction: float) -> float:
    """A prune fraction must lie in [0, 1): pruning everything leaves no model."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"prune fraction must lie in [0, 1) (the share of weights set to zero); got {fraction!r}")
    return float(fraction)


@torch.no_grad()
def prune_model(model: nn.Module, fraction: float, *, scope: str = "global") -> PruneResult:
    """A copy of ``model`` with the ``fraction`` smallest-magnitude prunable weights set to zero."""
    fraction = check_fraction(fraction)
    if scope not in SCOPES:
        raise unknown_name("prune scope", scope, SCOPES)
    pruned = copy.deepcopy(model)
    parameters = prunable_parameters(pruned)
    if not parameters:
        raise ConfigError(f"{type(model).__name__} has no weight matrix to prune")
    masks: dict[str, torch.Tensor] = {}
    if scope == "global":
        magnitudes = torch.cat([p.detach().abs().flatten() for p in parameters.values()])
        threshold = _threshold(magnitudes, fraction)
        for name, parameter in parameters.items():
            masks[name] = parameter.detach().abs() > threshold
    else:
        for name, parameter in parameters.items():
            masks[name] = parameter.detach().abs() > _threshold(parameter.detach().abs().flatten(), fraction)
    for name, parameter in parameters.items():
        parameter.mul_(masks[name])
    sparsity = {name: 1.0 - float(mask.float().mean()) for name, mask in masks.items()}
    return PruneResult(pruned, masks, fraction, scope, sparsity)


def _threshold(magnitudes: torch.Tensor, fraction: float) -> float:
    """The magnitude at or below which ``fraction`` of ``magnitudes`` lie (−1 when nothing is pruned)."""
    count = round(fraction * magnitudes.numel())
    if count == 0:
        return -1.0
    return float(torch.kthvalue(magnitudes, count).values)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the pruned weights of ``model`` back to zero (after an optimiser step moved them)."""
    parameters = prunable_parameters(model)
    for name, mask in masks.items():
        parameters[name].mul_(mask.to(parameters[name].device))


def compressed_bytes(model: nn.Module) -> int:
    """Bytes of the model's float state dict after gzip: what zeros save in a file you ship."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(gzip.compress(buffer.getvalue(), compresslevel=6))


# --------------------------------------------------------------------------------------------- fine-tuning
def finetune(result: PruneResult, config, epochs: int, *, task_data=None, out=None):
    """Train the pruned model ``epochs`` more epochs on the task of its run ``config`` (a
    ``TrainConfig``) with the training engine, keeping pruned weights at zero; returns the
    engine's ``RunResult`` (its ``model`` holds the best validation epoch, pruned as before).

    ``out``: the run directory to write (default: a temporary one, removed afterwards).
    """
    import tempfile
    from dataclasses import replace

    from lightning.pytorch.callbacks import Callback

    from rnnlab.train import train

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"finetune epochs must be a positive integer; got {epochs!r}")
    start = {name: tensor.detach().clone() for name, tensor in result.model.state_dict().items()}
    masks = result.masks

    class KeepPruned(Callback):
        """Start from the pruned weights; zero the pruned ones again after every optimiser step."""

        def on_fit_start(self, trainer, pl_module) -> None:
            pl_module.model.load_state_dict(start)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            apply_masks(pl_module.model, masks)

    def run(directory: str):
        settings = replace(config, epochs=epochs, out=directory, devices=1, target=None, max_minutes=None)
        return train(settings, callbacks=[KeepPruned()], task_data=task_data)

    if out is not None:
        trained = run(str(out))
    else:
        with tempfile.TemporaryDirectory(prefix="rnnlab-finetune-") as scratch:
            trained = run(f"{scratch}/run")
    apply_masks(trained.model, masks)
    return trained
