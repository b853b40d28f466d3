"""Input that used to break (issue 28): manifest headers, a class with no training clip, a sample rate too low
for the mel bands, file names that are not valid UTF-8."""

from __future__ import annotations

import csv
import errno
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocls.audio.frontend import FrontendConfig
from audiocls.data import CSVDataModule, FolderDataModule
from audiocls.data.cache import DecodedCache
from audiocls.errors import ConfigError
from tests.test_datasets import SMALL, _tone, make_folder

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


def test_class_without_training_clip_is_named(tmp_path, caplog):
    rows = [*((p, c, f) for p, c, f in ROWS if c == "cat"), *((p, c, 2) for p, c, _ in ROWS if c == "owl")]
    man = tmp_path / "clips.csv"
    make_folder(tmp_path / "audio")
    with man.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "fold"), *rows])
    dm = CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
    with caplog.at_level(logging.WARNING, logger="audiocls"):
        dm.setup("fit")
    lines = [r.getMessage() for r in caplog.records if "no training clip" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "owl" in lines[0] and "cat" not in lines[0] and "data.fold=2" in lines[0]
    assert dm.train_class_counts()[dm.class_names.index("owl")] == 0


def test_every_class_in_training_gives_no_such_warning(tmp_path, caplog):
    man = tmp_path / "clips.csv"
    make_folder(tmp_path / "audio")
    with man.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "fold"), *ROWS])
    with caplog.at_level(logging.WARNING, logger="audiocls"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL).setup("fit")
    assert not [r for r in caplog.records if "no training clip" in r.getMessage()]


def test_sample_rate_too_low_for_n_mels_is_one_config_error(tmp_path, recwarn):
    root = make_folder(tmp_path / "mine")
    frontend = FrontendConfig.logmel(window_ms=25, hop_ms=10, n_mels=128)
    with pytest.raises(ConfigError) as err:
        FolderDataModule(root, sample_rate=8000, clip_seconds=0.25, frontend=frontend, num_workers=0, batch_size=2)
    text = str(err.value)
    assert "data.sample_rate=8000" in text and "data.frontend.n_mels=128" in text
    assert "at most" in text  # the largest n_mels that works is named
    assert not [w for w in recwarn if "all zero values" in str(w.message)]


def test_n_mels_that_fits_is_accepted(tmp_path):
    root = make_folder(tmp_path / "mine")
    frontend = FrontendConfig.logmel(window_ms=25, hop_ms=10, n_mels=64)
    FolderDataModule(root, sample_rate=8000, clip_seconds=0.25, frontend=frontend, num_workers=0, batch_size=2)


def test_file_name_not_utf8_trains(tmp_path):
    root = make_folder(tmp_path / "mine", n=10)
    odd = os.fsdecode(os.path.join(os.fsencode(root / "cat"), b"caf\xe9.wav"))  # surrogate-escaped, as listed
    sf.write(root / "cat" / "0.wav", _tone(0.25, 8000, 300), 8000)
    os.rename(root / "cat" / "0.wav", odd)
    dm = FolderDataModule(root, fold=5, sample_rate=8000, clip_seconds=0.25, **SMALL)
    assert any(c.path == Path(odd) for c in dm.list_clips())
    dm.setup("fit")
    cache = dm.splits["train"].cache
    assert cache.bad == {}
    assert Path(odd) in cache.files


def _one_file(tmp_path: Path) -> list[Path]:
    path = tmp_path / "a.wav"
    sf.write(path, _tone(0.25, 8000, 300), 8000)
    return [path]


def test_cache_folder_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("AUDIOCLS_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ConfigError, match=r"cache folder .*file/cache.* not writable.*AUDIOCLS_CACHE"):
        DecodedCache(_one_file(tmp_path), 8000).build()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_read_only_cache_folder_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("AUDIOCLS_CACHE", str(folder))
    with pytest.raises(ConfigError, match=r"cache folder .*ro.* not writable.*AUDIOCLS_CACHE"):
        DecodedCache(_one_file(tmp_path), 8000).build()


def test_cache_disk_full_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(ConfigError, match=r"cache folder .*cache.*decoded-.* no space left.*AUDIOCLS_CACHE"):
        DecodedCache(_one_file(tmp_path), 8000, cache_dir).build()
    assert list(cache_dir.iterdir()) == []
