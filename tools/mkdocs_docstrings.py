"""A Griffe extension for the API pages of the documentation site (``mkdocs.yml`` loads it).

The docstrings are written for ``help()`` and the source: doctest examples (``>>>``) inside the
prose and Sphinx roles (``:class:`GateRecord```). Markdown would read an example such as
``record["", 1, "forward"]["f"]`` as a reference link, and the roles as text, so before the
docstrings are parsed this wraps every doctest block in a fenced ``pycon`` block and turns each
role into inline code. The source is not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """``text`` with each run of doctest lines (a ``>>>`` line to the next blank line) fenced."""
    lines, out, in_example, in_fence = text.splitlines(), [], False, False
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and not in_example and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_example = True
        elif in_example and not stripped:
            out.append(f"{indent}```")
            in_example = False
        out.append(line)
    if in_example:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestsAsCode(griffe.Extension):
    """Fence doctest blocks and flatten Sphinx roles in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        obj.docstring.value = ROLE.sub(r"`\1`", fence_doctests(obj.docstring.value))
