"""rnnlab: the recurrent network family, its variants and its challengers.

Layers that drop in for ``torch.nn.RNN/LSTM/GRU`` (``rnnlab.RNN``, ``rnnlab.LSTM``,
``rnnlab.GRU``), tasks, models, a training engine, a comparison lab and deployment tools.
See ARCHITECTURE.md for how the stages fit together.
"""

__version__ = "0.1.0"

from rnnlab.cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from rnnlab.cells.min_rnn import MinGRU, MinLSTM  # noqa: E402
from rnnlab.layers import GRU, LSTM, RNN, count_parameters, record_gates  # noqa: E402
from rnnlab.generate import generate, generate_stream  # noqa: E402  (the function shadows its module's name)

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "MinGRU", "MinLSTM", "RNN", "RNNCell", "count_parameters", "generate",
           "generate_stream", "record_gates"]
