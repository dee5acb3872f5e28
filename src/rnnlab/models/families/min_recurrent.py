"""mingru, minlstm: stacked ``rnnlab.MinGRU`` / ``MinLSTM`` (Feng et al. 2024), gates from the input
only, so training scans time without a matmul per step (``models/recurrent.py`` builds the stack)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from rnnlab.errors import ConfigError
from rnnlab.models.families.recurrent import recurrent_task_model, task_bidirectional
from rnnlab.models.family import COMMON_SEARCH_SPACE, BuildOptions, ModelFamily
from rnnlab.models.recurrent import RecurrentEncoder
from rnnlab.models.task_model import TaskModel


@dataclass(frozen=True)
class MinRecurrentOptions:
    """``embedding_dim`` ``None``: token ids embedded at the width."""

    embedding_dim: int | None = None


def check_min_recurrent(name: str, spec: SimpleNamespace, options: BuildOptions[MinRecurrentOptions]) -> None:
    for option, value in (("layer_norm", options.layer_norm), ("init", options.init)):
        if value:
            raise ConfigError(
                f"{option}={value!r} applies to rnn, lstm and gru; {name} (Feng et al. 2024) has "
                "no recurrent weights to normalise or initialise"
            )
    if options.bidirectional is None:
        options.bidirectional = task_bidirectional(spec)


def build_min_recurrent(
    name: str, spec: SimpleNamespace, width: int, options: BuildOptions[MinRecurrentOptions]
) -> TaskModel:
    encoder = RecurrentEncoder(
        spec,
        name,
        width,
        num_layers=options.num_layers,
        bidirectional=bool(options.bidirectional),
        dropout=options.dropout,
        embedding_dim=options.model.embedding_dim,
    )
    return recurrent_task_model(name, spec, encoder, options.dropout)


FAMILIES = {
    cell: ModelFamily(
        build_min_recurrent,
        MinRecurrentOptions,
        f"stacked {label} (Feng et al. 2024)",
        check=check_min_recurrent,
        streamable=True,
        search_space=dict(COMMON_SEARCH_SPACE),
    )
    for cell, label in (("mingru", "minGRU"), ("minlstm", "minLSTM"))
}
