"""rnnlab: the recurrent network family, its variants and its challengers.

Layers that drop in for ``torch.nn.RNN/LSTM/GRU`` (``rnnlab.RNN``, ``rnnlab.LSTM``,
``rnnlab.GRU``), tasks, models, a training engine, a comparison lab and deployment tools.
See ARCHITECTURE.md for how the stages fit together.
"""

from rnnlab.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.generate import generate, generate_stream
from rnnlab.layers import GRU, LSTM, RNN, MinGRU, MinLSTM, count_parameters, record_gates
from rnnlab.version import __version__

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "MinGRU",
    "MinLSTM",
    "RNNCell",
    "__version__",
    "count_parameters",
    "generate",
    "generate_stream",
    "record_gates",
]
