"""Every figure in the tables of the README and the documentation must name the command that reproduces it.

    python tools/check_readme_figures.py [FILE_OR_FOLDER ...]

With no arguments it checks README.md and every page of the documentation site (``docs/**/*.md``,
and the files those pages include with a ``--8<-- "FILE"`` snippet line); a folder stands for the
``*.md`` files under it. Lists every number in each file's Markdown tables, table by table, and the
commands named in the table's part of its section: the text from the heading or the table before it
down to the table, and the table's own cells (a reader meets the command before the figures it made). A command is a
line of a fenced code block that starts with ``rnnlab``, ``python`` or ``pip`` (environment
assignments such as ``OMP_NUM_THREADS=1`` may come first), or inline code that starts with
``rnnlab `` or ``python ``. A table with numbers whose part names no command fails, unless its
section's heading is in ``EXCEPTIONS`` (which is empty: a figure without its command is fixed or
removed, not excused). The rule is the same for every file. Exit status 0 when every table of
every file passes, 1 otherwise.
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
SNIPPET = re.compile(r'^-{1,}8<-{1,}\s+"([^"]+)"\s*$')  # pymdownx.snippets: a file included in a page
ROOT = Path(__file__).resolve().parent.parent


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
    """Every table of a Markdown text with its numbers and the commands of its part of the section."""
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


def default_files(root: Path = ROOT) -> list[Path]:
    """README.md and the documentation's pages under ``root``, with the files the pages include."""
    return expand([root / "README.md", root / "docs"], root)


def expand(paths: list[Path], root: Path) -> list[Path]:
    """The files for ``paths``: a folder gives the ``*.md`` files under it (sorted), and a snippet line
    of a page adds the file it includes (relative to ``root``, as mkdocs reads it) after the page."""
    files: list[Path] = []
    for path in paths:
        for page in sorted(path.rglob("*.md")) if path.is_dir() else [path]:
            files.append(page)
            if page.is_file():
                for line in page.read_text(encoding="utf-8").splitlines():
                    if match := SNIPPET.match(line.strip()):
                        files.append(root / match.group(1))
    return list(dict.fromkeys(files))  # each file once, in order


def display(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it, else its name."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path.cwd() if argv else ROOT  # snippets are read relative to it, as mkdocs does from the root
    files = expand([Path(arg) for arg in argv], root) if argv else default_files(root)
    missing = [display(path, root) for path in files if not path.is_file()]
    if missing:
        print(f"no such file (named or included by a page): {', '.join(missing)}", file=sys.stderr)
        return 1
    checked: list[tuple[str, Table]] = []
    for path in files:
        name = display(path, root)
        tables = [table for table in read_tables(path.read_text(encoding="utf-8")) if table.numbers]
        for table in tables:
            verdict = "ok" if table.passes else "NO COMMAND"
            print(f"{name}:{table.line}: [{table.heading}] {len(table.numbers)} figures: {verdict}")
            print(f"    figures: {' '.join(table.numbers)}")
            if table.commands:
                print(f"    command: {table.commands[0]}")
            checked.append((name, table))
    failures = [(name, table) for name, table in checked if not table.passes]
    if failures:
        print(
            f"{len(failures)} of {len(checked)} tables show figures without naming the command that reproduces "
            "them: " + "; ".join(f"{name} line {table.line} [{table.heading}]" for name, table in failures),
            file=sys.stderr,
        )
        return 1
    files_checked = f"{len(files)} file" + ("s" if len(files) != 1 else "")
    print(f"each of the {len(checked)} tables with figures in {files_checked} names the command that reproduces them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
