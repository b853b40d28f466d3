"""Reading a CSV manifest (``path,label[,fold][,group]``) into rows, with one error line for a file that is not
UTF-8 or not CSV.

Spreadsheet programs write a byte-order mark, spaces after the commas, ``\\r\\n`` or ``\\r`` line endings, and on
some systems Latin-1 or UTF-16 instead of UTF-8: the first three are read as written; a file in another encoding
is refused naming the file, the line and the byte, and how to save it as UTF-8, never decoded by a guess (a
guessed encoding would silently change a label or a path).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

from audiocls.errors import DataError

__all__ = ["read_manifest"]

_FIX = "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and run again"
_NOT_CSV = "expected a text file with the header path,label[,fold] and one row per clip"
_LINES = re.compile(rb"\r\n|\r|\n")


def _line_of(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of byte ``offset`` in ``data``, for any of the three line endings."""
    before = _LINES.split(data[:offset])
    return len(before), len(before[-1]) + 1


def _decode(path: Path, data: bytes) -> str:
    """``data`` (its UTF-8 byte-order mark dropped) as text; :class:`DataError` naming the line when not UTF-8."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"data.manifest={path} is UTF-16, not UTF-8; {_FIX}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = _line_of(data, err.start)
        raise DataError(
            f"data.manifest={path}: line {line} is not UTF-8 (byte 0x{data[err.start]:02x} at column {column}, "
            f"perhaps Latin-1 or Windows-1252); {_FIX}"
        ) from err


def _check_row(path: Path, row: dict, line: int) -> None:
    """A row of fewer cells than the header (a bare ``\\r`` or line break splits a row in two) or without a path."""
    if "path" not in row or "label" not in row:
        return  # the header is refused as a whole by the datamodule
    if row["path"] is None or row["label"] is None:
        cells = sum(v is not None for k, v in row.items() if k is not None)
        raise DataError(
            f"data.manifest={path}: line {line} has {cells} cells for the {len(row)} columns of the header; every "
            "row needs a path and a label (quote a cell that holds a comma or a line break)"
        )
    if not row["path"].strip():
        raise DataError(f"data.manifest={path}: line {line} has an empty path cell; every row names an audio file")


def read_manifest(path: Path) -> list[dict[str, str | None]]:
    """The rows of the CSV manifest ``path`` as dicts keyed by its header (names stripped of spaces).

    Raises:
        DataError: the file is not UTF-8, holds a NUL byte, is not CSV, or a row lacks its path or label cell
            (naming the line).
    """
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    text = _decode(path, data)
    if "\0" in text:  # a path cell with a NUL cannot name a file; csv would read it as part of the cell
        line, column = _line_of(data, data.index(b"\0"))
        raise DataError(f"data.manifest={path}: line {line} holds a NUL byte at column {column}; {_NOT_CSV}")
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    try:
        if reader.fieldnames:  # "path, label" and "path ,label" name the same columns
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
        rows = []
        for row in reader:
            _check_row(path, row, reader.line_num)
            rows.append(row)
        return rows
    except csv.Error as err:
        raise DataError(f"data.manifest={path}: line {reader.line_num} is not CSV ({err}); {_NOT_CSV}") from err
