"""A CSV manifest that is not UTF-8 or not CSV (issue 28): one line naming the file, the line and the fix."""

from __future__ import annotations

import pytest

from audiocls.data import CSVDataModule
from audiocls.errors import DataError
from tests.test_datasets import SMALL, make_folder

HEADER = "path,label,fold\n"
ROWS = [f"audio/{c}/{i}.{('wav', 'flac', 'ogg')[i % 3]},{c},{1 + i % 2}\n" for c in ("cat", "owl") for i in range(6)]


def _write(tmp_path, data: bytes):
    make_folder(tmp_path / "audio", classes=("cat", "owl"), n=6)
    man = tmp_path / "clips.csv"
    man.write_bytes(data)
    return man


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_latin1_label_names_the_file_the_line_and_utf8(tmp_path, newline):
    rows = [*ROWS[:4], "audio/owl/0.wav,caf\xe9,2\n"]
    text = (HEADER + "".join(rows)).replace("\n", newline)
    man = _write(tmp_path, text.encode("latin-1"))
    with pytest.raises(DataError) as err:
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
    text = str(err.value)
    assert "\n" not in text and str(man) in text and "line 6 " in text and "0xe9" in text and "UTF-8" in text


def test_latin1_path_cell_names_its_line(tmp_path):
    man = _write(tmp_path, (HEADER + ROWS[0] + "audio/\xe9t\xe9.wav,cat,1\n").encode("cp1252"))
    with pytest.raises(DataError, match=r"clips\.csv: line 3 is not UTF-8 \(byte 0xe9 at column 7"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)


def test_utf16_manifest_is_named(tmp_path):
    man = _write(tmp_path, (HEADER + "".join(ROWS)).encode("utf-16"))
    with pytest.raises(DataError, match=r"clips\.csv is UTF-16, not UTF-8; save it as UTF-8"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)


def test_nul_byte_names_its_line(tmp_path):
    man = _write(tmp_path, (HEADER + "".join(ROWS[:3]) + "audio/cat/3.wav,c\0at,2\n").encode())
    with pytest.raises(DataError, match=r"clips\.csv: line 5 holds a NUL byte at column 18"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)


def test_utf8_with_accents_and_windows_line_endings_reads(tmp_path):
    rows = [r.replace("owl,", "\xe9l\xe9phant,") for r in ROWS]
    man = _write(tmp_path, (HEADER + "".join(rows)).replace("\n", "\r\n").encode("utf-8-sig"))
    dm = CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
    assert dm.class_names == ["cat", "\xe9l\xe9phant"]


def test_a_row_split_by_a_bare_cr_names_its_line(tmp_path):
    """Found by the property test: a bare ``\\r`` in an unquoted path cell ends the row there, leaving a row with
    no label cell and one with no path cell (was an AttributeError traceback)."""
    man = _write(tmp_path, ("label,path\n" + "cat,audio/cat/0.wav\n" + "cat,audio/cat/1\r.wav\n").encode())
    with pytest.raises(DataError, match=r"clips\.csv: line 4 has 1 cells for the 2 columns of the header"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)


def test_an_empty_path_cell_names_its_line(tmp_path):
    man = _write(tmp_path, (HEADER + ROWS[0] + " ,cat,1\n").encode())
    with pytest.raises(DataError, match=r"clips\.csv: line 3 has an empty path cell"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
