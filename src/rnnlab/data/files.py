"""Reading users' files so that every complaint can name the file, the line and the column.

``resolve_source`` tells a built-in data set name from a path. CSV rows are read with the standard
``csv`` module rather than ``pandas.read_csv`` because error
messages need each row's true line number in the file (blank lines and quoted newlines shift
pandas' row index) and because wide files may have rows with fewer cells than the header.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnlab.errors import ConfigError, DataError

#: Cell texts read as "missing" (case-insensitive), as pandas and spreadsheets write them.
MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a"})


@dataclass
class Table:
    """A CSV file's cells as text: ``frame`` has the header's columns, its index is the file line."""

    path: str
    columns: list[str]
    frame: pd.DataFrame

    @property
    def lines(self) -> np.ndarray:
        return self.frame.index.to_numpy()

    def __len__(self) -> int:
        return len(self.frame)


def resolve_source(
    data: str | None, builtins: Sequence[str], default: str | None, task: str
) -> tuple[str | None, str | None]:
    """``(builtin_name, None)`` or ``(None, path)`` for a task's ``data`` argument.

    An existing path wins over a built-in of the same name; ``None`` means the task's default built-in.
    """
    if data is None:
        if default is None:
            raise ConfigError(f"task {task!r} needs data: give a file or folder path")
        return default, None
    if os.path.exists(data):
        return None, data
    if data in builtins:
        return data, None
    close = difflib.get_close_matches(data, list(builtins), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = f" (built-in data sets of task {task!r}: {', '.join(builtins)})" if builtins else ""
    raise DataError(f"{data}: no such file or folder, and not a built-in data set{hint}{known}")


def read_text_file(path: str, *, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is dropped); DataError if missing, empty or not UTF-8."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such {what}")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a {what}")
    with open(path, "rb") as file:
        raw = file.read()
    if not raw.strip():
        raise DataError(f"{path}: the {what} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}: not UTF-8 text: byte offset {error.start} (line {line}) holds "
            f"{raw[error.start : error.end]!r} ({error.reason}); save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def read_table(path: str) -> Table:
    """Read a CSV with a header row. Blank lines are skipped; short rows are padded with empty cells."""
    text = read_text_file(path, what="CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):
            header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the CSV file has no header row") from None
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    header = [name.strip() for name in header]
    _check_header(path, header, reader.line_num)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                extra = [cell for cell in row[len(header) :] if cell.strip()]
                if extra:
                    raise DataError(
                        f"{path}: line {reader.line_num} has {len(row)} cells but the header has "
                        f"{len(header)} columns (extra value {extra[0]!r})"
                    )
                row = row[: len(header)]
            rows.append([cell.strip() for cell in row] + [""] * (len(header) - len(row)))
            # reader.line_num is the line where the record ends; a record spans several lines
            # only when a quoted cell holds a newline
            lines.append(reader.line_num)
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    if not rows:
        raise DataError(f"{path}: the CSV file has a header but no data rows")
    frame = pd.DataFrame(rows, columns=header, index=pd.Index(lines, name="line"), dtype=object)
    return Table(path, header, frame)


def _check_header(path: str, header: list[str], line: int) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{path}: line {line}: column {position} of the header has no name")
        if name in seen:
            raise DataError(
                f"{path}: line {line}: column name {name!r} appears twice (columns {seen[name]} and {position})"
            )
        seen[name] = position


def require_columns(table: Table, names: Sequence[str], option: str) -> None:
    """DataError naming the first missing column, its nearest match and the columns present."""
    for name in names:
        if name not in table.columns:
            close = difflib.get_close_matches(name, table.columns, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"{table.path}: no column {name!r} (option {option}){hint} "
                f"(columns present: {', '.join(table.columns)})"
            )


def split_names(value: str | None) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]``; ``None`` → ``[]``."""
    if value is None:
        return []
    names = [name.strip() for name in str(value).split(",")]
    if any(not name for name in names):
        raise ConfigError(f"expected comma-separated column names, got {value!r}")
    return names


def missing_mask(cells: pd.Series | pd.DataFrame) -> np.ndarray:
    """True where a cell is empty or a missing-value marker (``NA``, ``NaN``, ``null``, ...)."""
    return np.asarray(cells.map(lambda cell: cell.lower() in MISSING_TEXTS), dtype=bool)


def to_numbers(table: Table, columns: Sequence[str]) -> np.ndarray:
    """``float64[rows, len(columns)]`` with NaN where a cell is missing; DataError on any non-number."""
    cells = table.frame[list(columns)]
    missing = missing_mask(cells)
    numbers = np.empty(cells.shape, dtype=np.float64)
    for j, column in enumerate(columns):
        numbers[:, j] = pd.to_numeric(cells[column].where(~missing[:, j], None), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = ~missing & ~np.isfinite(numbers)
    if bad.any():
        rows, cols = np.nonzero(bad)
        examples = [
            f"line {table.lines[r]} column {columns[c]!r}: {cells.iat[r, c]!r}" for r, c in zip(rows[:5], cols[:5])
        ]
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        raise DataError(f"{table.path}: expected numbers, found {'; '.join(examples)}{more}")
    return numbers


def parse_times(table: Table, column: str) -> tuple[str, pd.DatetimeIndex | np.ndarray]:
    """Numbers (a step count, a year) or dates; DataError naming the line of a missing or bad time."""
    cells = table.frame[column]
    missing = missing_mask(cells)
    if missing.any():
        raise DataError(f"{table.path}: line {table.lines[missing.argmax()]}: the time column {column!r} is empty")
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isfinite(numbers).all():
        return "numeric", numbers
    times = _to_datetimes(cells, format=None)  # one format, inferred from the first cell: fast
    if times.isna().any():
        times = _to_datetimes(cells, format="mixed")  # each cell on its own
    bad = times.isna().to_numpy()
    if bad.any():
        # mostly numbers: the culprit is the first cell that is not one, not a number that is no date
        row = np.argmin(np.isfinite(numbers)) if np.isfinite(numbers).mean() >= 0.5 else bad.argmax()
        raise DataError(
            f"{table.path}: line {table.lines[row]} column {column!r}: {cells.iat[row]!r} is neither a number nor a "
            f"date/time (e.g. 2024-01-31 or 2024-01-31 13:00)"
        )
    return "datetime", pd.DatetimeIndex(times)


def _to_datetimes(cells: pd.Series, format: str | None) -> pd.Series:
    with warnings.catch_warnings():  # pandas warns when it cannot infer one format; we retry per cell
        warnings.simplefilter("ignore", UserWarning)
        try:
            return pd.to_datetime(cells, errors="coerce", format=format)
        except (ValueError, TypeError):  # e.g. time zones that differ from cell to cell
            return pd.Series(pd.NaT, index=cells.index)


def describe_cells(lines: np.ndarray, columns: Sequence[str], mask: np.ndarray, limit: int = 5) -> str:
    """``"line 4 column 'x', line 9 column 'y' (and 3 more)"`` for the True cells of ``mask``."""
    rows, cols = np.nonzero(mask)
    parts = [f"line {lines[r]} column {columns[c]!r}" for r, c in zip(rows[:limit], cols[:limit])]
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(parts) + more
