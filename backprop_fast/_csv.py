"""Reading CSV files for the command line, with errors that give the line number.

A file is read whole into a :class:`Table` of strings (blank lines skipped,
each row remembering its line number in the file), then columns are turned
into numbers with :meth:`Table.numeric`, which names the line and the column
of the first cell that is not a finite number.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

__all__ = ["CSVError", "Table", "read_csv", "is_number", "detect_header"]

PathLike = Union[str, "os.PathLike[str]"]
_SNIFF_DELIMITERS = ",;\t|"


class CSVError(ValueError):
    """A CSV file that cannot be used; the message names the file and the line."""


def is_number(cell: str) -> bool:
    """Whether ``cell`` reads as a finite number ("1", "-2.5e3"; not "", "nan", "inf")."""
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def detect_header(first: Sequence[str], second: Optional[Sequence[str]]) -> bool:
    """Whether the first row of a file is a header line.

    It is when it has a cell that is not a number in a column whose next-row
    cell is one (a column name above a value), or when none of its cells is a
    number (all names). A numeric first row is data.
    """
    words = [bool(c.strip()) and not is_number(c) for c in first]
    if not any(words):
        return False
    if all(words) or second is None:
        return True
    return any(w and i < len(second) and is_number(second[i]) for i, w in enumerate(words))


@dataclass
class Table:
    """The cells of a CSV file: ``rows[i]`` came from line ``lines[i]``."""

    path: str
    columns: List[str]
    rows: List[List[str]]
    lines: List[int]
    has_header: bool
    header_line: int = 0

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """"FILE, line N" for row ``i``."""
        return f"{self.path}, line {self.lines[i]}"

    def column_label(self, c: int) -> str:
        """"column 'name'" with a header line, "column 3" without."""
        return f"column {self.columns[c]!r}" if self.has_header else f"column {c}"

    def column_index(self, key: str, option: str = "--target") -> int:
        """Position of the column named (or numbered) ``key``."""
        if self.has_header:
            if key in self.columns:
                return self.columns.index(key)
            stripped = [c.strip() for c in self.columns]
            if key.strip() in stripped:
                return stripped.index(key.strip())
        try:
            index = int(key)
        except ValueError:
            if self.has_header:
                raise CSVError(f"{option} {key!r}: {self.path} has no such column; its "
                               f"columns are {', '.join(map(repr, self.columns))}") from None
            raise CSVError(f"{option} {key!r}: {self.path} has no header line, so columns "
                           f"are numbered 0 to {len(self.columns) - 1} (-1 is the last); "
                           "give a number, or --header if the first line holds names") from None
        n = len(self.columns)
        if not -n <= index < n:
            raise CSVError(f"{option} {index}: {self.path} has {n} columns, numbered 0 to "
                           f"{n - 1} (or -{n} to -1 from the end)")
        return index % n

    def numeric(self, columns: Sequence[int], what: str = "feature") -> np.ndarray:
        """The given columns as a float64 array (n_rows, len(columns)).

        Raises
        ------
        CSVError
            At the first cell that is empty or not a finite number, naming its
            line and column.
        """
        out = np.empty((self.n_rows, len(columns)), dtype=np.float64)
        for i, row in enumerate(self.rows):
            try:
                out[i] = [float(row[c]) for c in columns]
            except ValueError:
                pass
            else:
                if np.isfinite(out[i]).all():
                    continue
            for c in columns:
                if not is_number(row[c]):
                    cell = row[c]
                    if not cell.strip():
                        problem = "is empty (a missing value: fill it in or drop the row)"
                    else:
                        problem = f"{cell!r} is not a finite number"
                        if what == "feature" and not is_number(self.rows[0][c]):
                            problem += (" (if the column is not a feature, leave it out "
                                        f"with --ignore {self.columns[c]})")
                    raise CSVError(f"{self.where(i)}, {self.column_label(c)}: the {what} "
                                   f"cell {problem}")
        return out


def _open_text(path: str):
    if path == "-":
        import sys
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv(path: PathLike, *, header: Optional[bool] = None,
             delimiter: Optional[str] = None) -> Table:
    """Read a CSV file (optionally gzip-compressed, ``-`` for stdin) into a Table.

    Parameters
    ----------
    path : str or path-like
    header : bool or None
        Whether the first line holds column names; None detects it (see
        :func:`detect_header`).
    delimiter : str or None
        Field separator; None detects one of ``, ; TAB |`` from the first lines.

    Raises
    ------
    CSVError
        If the file is empty, has no data rows, rows of differing lengths
        (naming the first such line), or is not text.
    OSError
        If the file cannot be opened.
    """
    path = os.fspath(path)
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise CSVError(f"{path}: not a UTF-8 text file ({exc.reason} at byte "
                       f"{exc.start})") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise CSVError(f"{path}: not a readable gzip file ({exc})") from None
    if "\0" in text:
        raise CSVError(f"{path}: holds NUL bytes; is it a binary file rather than CSV?")
    if delimiter is None:
        sample = "\n".join(text.splitlines()[:20])
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise CSVError(f"{path}, line {reader.line_num}: {exc}") from None
    if not rows:
        raise CSVError(f"{path} is empty: no rows")
    if header is None:
        header = detect_header(rows[0], rows[1] if len(rows) > 1 else None)
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise CSVError(f"{path}, line {lines[i]}: {len(row)} fields, but line {lines[0]} "
                           f"has {width}; every row needs the same number of fields "
                           f"(delimiter {delimiter!r})")
    if header:
        columns = [c.strip() for c in rows[0]]
        header_line = lines[0]
        # Columns are found by name: a name used twice would silently map
        # every use to its first column.
        seen: dict = {}
        for i, name in enumerate(columns):
            seen.setdefault(name, []).append(i)
        repeated = {name: where for name, where in seen.items() if len(where) > 1}
        if repeated:
            name, where = next(iter(repeated.items()))
            raise CSVError(f"{path}, line {header_line}: the header names column {name!r} "
                           f"{len(where)} times (columns {', '.join(map(str, where))}); "
                           "give every column its own name, or use --no-header with a "
                           "file without the header line to number the columns")
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise CSVError(f"{path}: a header line but no data rows")
    else:
        columns = [str(i) for i in range(width)]
        header_line = 0
    return Table(path, columns, rows, lines, bool(header), header_line)
