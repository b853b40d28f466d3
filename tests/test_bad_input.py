"""Input that used to break (issue 28)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiocls.data import CSVDataModule
from tests.test_datasets import SMALL, make_folder

ROWS = [(f"audio/{c}/{i}.{('wav', 'flac', 'ogg')[i % 3]}", c, 1 + i % 2) for c in ("owl", "cat") for i in range(6)]


def _manifest(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    make_folder(tmp_path / "audio")
    man = tmp_path / "clips.csv"
    man.write_text(text, encoding=encoding)
    return man


@pytest.mark.parametrize(
    ("header", "sep", "encoding"),
    [("path,label,fold", ",", "utf-8-sig"), ("path, label, fold", ", ", "utf-8"), ("path ,label,fold", ",", "utf-8")],
    ids=["byte-order-mark", "space-after-comma", "space-before-comma"],
)
def test_csv_header_with_bom_or_spaces_is_accepted(tmp_path, header, sep, encoding):
    text = "\n".join([header, *(sep.join(map(str, r)) for r in ROWS)]) + "\n"
    dm = CSVDataModule(_manifest(tmp_path, text, encoding), fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
    assert dm.class_names == ["cat", "owl"] and dm.num_folds == 2
    dm.setup("fit")
    assert len(dm.splits["test"]) == 6
