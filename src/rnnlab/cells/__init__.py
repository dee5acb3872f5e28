"""Cells: one step of each recurrent cell, written from its equations (``carry -> (carry, gates)``).

A cell knows nothing of sequences, padding or directions; :mod:`rnnlab.layers` runs it over time.
Each cell exists as a step function (what a layer calls, with the layer's weights) and as a module
with its own parameters that drops in for ``torch.nn.RNNCell / LSTMCell / GRUCell``.
"""

from rnnlab.cells.base import CellWeights, project_hidden, project_input
from rnnlab.cells.gru import GRUCell, convert_gru_convention, gru_step
from rnnlab.cells.lstm import LSTMCell, lstm_step
from rnnlab.cells.rnn import RNNCell, rnn_step

__all__ = [
    "CellWeights",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "convert_gru_convention",
    "gru_step",
    "lstm_step",
    "project_hidden",
    "project_input",
    "rnn_step",
]
