"""Every figure in the README's tables must name the command that reproduces it.

    python tools/check_readme_figures.py [README.md]

Lists every number in the README's Markdown tables, table by table, and the commands named in the
table's part of its section: the text from the heading or the table before it down to the table,
and the table's own cells (a reader meets the command before the figures it made). A command is a
line of a fenced code block that starts with ``rnnlab``, ``python`` or ``pip`` (environment
assignments such as ``OMP_NUM_THREADS=1`` may come first), or inline code that starts with
``rnnlab `` or ``python ``. A table with numbers whose part names no command fails, unless its
section's heading is in ``EXCEPTIONS`` (which is empty: a figure without its command is fixed or
removed, not excused). Exit status 0 when every table passes, 1 otherwise.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Sections (their heading text) allowed to show table figures without a command. Keep it empty.
EXCEPTIONS: tuple[str, ...] = ()

NUMBER = re.compile(r"(?<![\w.])[-−+]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-−+]?\d+)?", re.IGNORECASE)
COMMAND_LINE = re.compile(r"^\s*(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:rnnlab|python3?|pip)\s")
INLINE_COMMAND = re.compile(r"`((?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:rnnlab|python3?) [^`]+)`")
SEPARATOR_ROW = re.compile(r"^\|[\s:|-]+\|$")


@dataclass
class Table:
    heading: str  # of the section holding the table
    line: int
    numbers: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        return not self.numbers or bool(self.commands) or self.heading in EXCEPTIONS


def read_tables(text: str) -> list[Table]:
    """Every table of the README with its numbers and the commands of its part of the section."""
    tables: list[Table] = []
    heading, in_code = "(before the first heading)", False
    before: list[str] = []  # commands since the heading or table before
    current: Table | None = None  # the table being read
    paragraph: list[str] = []  # prose lines: inline code may run across a line break

    def flush() -> None:
        before.extend(INLINE_COMMAND.findall(" ".join(paragraph)))
        paragraph.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            in_code, current = not in_code, None
        elif in_code:
            if COMMAND_LINE.match(line):
                before.append(stripped)
        elif re.match(r"^#{1,6} ", line):
            paragraph.clear()
            heading, current = line.lstrip("#").strip(), None
            before.clear()
        elif stripped.startswith("|"):
            flush()
            if current is None:  # a table starts: what came before it is its part of the section
                current = Table(heading, number, commands=list(before))
                tables.append(current)
                before.clear()
            current.commands += INLINE_COMMAND.findall(stripped)
            if not SEPARATOR_ROW.match(stripped):
                current.numbers += NUMBER.findall(re.sub(r"`[^`]*`", "", stripped))  # inline code is no figure
        else:
            current = None  # any other line ends a table
            if stripped:
                paragraph.append(stripped)
            else:
                flush()
    return tables


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "README.md"
    tables = [table for table in read_tables(path.read_text(encoding="utf-8")) if table.numbers]
    failures = [table for table in tables if not table.passes]
    for table in tables:
        verdict = "ok" if table.passes else "NO COMMAND"
        print(f"{path.name}:{table.line}: [{table.heading}] {len(table.numbers)} figures: {verdict}")
        print(f"    figures: {' '.join(table.numbers)}")
        if table.commands:
            print(f"    command: {table.commands[0]}")
    if failures:
        print(
            f"{len(failures)} of {len(tables)} tables show figures without naming the command that reproduces "
            "them: " + "; ".join(f"line {table.line} [{table.heading}]" for table in failures),
            file=sys.stderr,
        )
        return 1
    print(f"each of the {len(tables)} tables with figures names the command that reproduces them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
