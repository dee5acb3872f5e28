"""Errors that say what was expected and what came.

Every error a user can cause with their input is a ``ValueError`` subclass, so the command line can
print it as one clear line and exit, and Python users can catch it the usual way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RnnlabError(ValueError):
    """Base class of the errors rnnlab raises for bad input."""


class DataError(RnnlabError):
    """A data file or data option is wrong: names the file, line/row, column and value."""


class ConfigError(RnnlabError):
    """An option, name or combination of options is wrong."""


class TrainingError(RuntimeError):
    """Training could not go on (for example a non-finite loss); names the step."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """An error for an unknown ``name`` of ``kind``, suggesting the nearest valid names.

    >>> str(unknown_name("model", "lstn", ["rnn", "lstm", "gru"]))
    "unknown model 'lstn'; did you mean 'lstm'? (choices: rnn, lstm, gru)"
    """
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices)})")
