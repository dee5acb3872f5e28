"""rnnlab: the recurrent network family, its variants and its challengers.

Layers that drop in for ``torch.nn.RNN/LSTM/GRU`` (``rnnlab.RNN``, ``rnnlab.LSTM``,
``rnnlab.GRU``), tasks, models, a training engine, a comparison lab and deployment tools.
See ARCHITECTURE.md for how the stages fit together.
"""

__version__ = "0.1.0"

from rnnlab.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.cells.min_rnn import MinGRU, MinLSTM
from rnnlab.generate import generate, generate_stream
from rnnlab.layers import GRU, LSTM, RNN, count_parameters, record_gates

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "MinGRU",
    "MinLSTM",
    "RNNCell",
    "count_parameters",
    "generate",
    "generate_stream",
    "record_gates",
]
