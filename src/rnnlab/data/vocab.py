"""Word vocabularies: tokenising text, building a vocabulary from the training part, encoding.

Index 0 is ``<pad>`` (what ``collate`` pads token inputs with) and index 1 is ``<unk>``; words seen
fewer than ``min_freq`` times in training map to ``<unk>``, so the model meets ``<unk>`` while
training and learns what to do with words it has never seen.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_INDEX, UNK_INDEX = 0, 1

# Chinese, Japanese kana and other CJK ideographs are written without spaces: one token per
# character. Elsewhere a token is a run of word characters or one punctuation mark.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def tokenize_words(text: str, *, lowercase: bool = True) -> list[str]:
    """Words, punctuation marks and single CJK characters.

    >>> tokenize_words("The cat's 2 hats, 我爱猫!")
    ['the', 'cat', "'", 's', '2', 'hats', ',', '我', '爱', '猫', '!']
    """
    return _TOKEN.findall(text.lower() if lowercase else text)


def build_vocab(sequences: Iterable[Sequence[str]], min_freq: int) -> list[str]:
    """``[<pad>, <unk>, words by falling count (ties alphabetical)]`` for words seen ``min_freq``+ times."""
    counts = Counter(token for sequence in sequences for token in sequence)
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    words = sorted((w for w, c in counts.items() if c >= max(1, min_freq)), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *words]


def encode(tokens: Sequence[str], index: dict[str, int]) -> torch.Tensor:
    """``LongTensor[len(tokens)]`` of vocabulary ids (``<unk>`` for words not in ``index``)."""
    return torch.tensor([index.get(token, UNK_INDEX) for token in tokens], dtype=torch.long)
