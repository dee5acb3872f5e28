"""One file per model family: its options (a frozen dataclass), its checks, its builder and its
``ModelFamily`` entries. They sit apart from the encoder modules (``models/tcn.py`` is the network,
``models/families/tcn.py`` what ``build_model("tcn", ...)`` knows of the name) so that each name
reads as one file and the registry (``rnnlab.models``) imports them from one place.

``BUILT_IN``: every family's entries, in the order ``model_names()`` lists them.
"""

from __future__ import annotations

from rnnlab.models.families import informer, min_recurrent, recurrent, tcn, transformer, transformer_xl
from rnnlab.models.family import ModelFamily

BUILT_IN: dict[str, ModelFamily] = {
    **recurrent.FAMILIES,
    **tcn.FAMILIES,
    **transformer.FAMILIES,
    **min_recurrent.FAMILIES,
    **informer.FAMILIES,
    **transformer_xl.FAMILIES,
}
