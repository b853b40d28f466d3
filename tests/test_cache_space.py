"""The cache folders before and during a write (issue 28): too little free space is refused before any decode,
and a disk that fills mid-write is one line naming the file, leaving nothing a later run would read as valid."""

from __future__ import annotations

import builtins
import errno
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.audio.frontend import build_frontend
from audiocls.data import cache as cache_module
from audiocls.data import precompute
from audiocls.data.cache import DecodedCache
from audiocls.data.clips import ClipDataset
from audiocls.errors import ConfigError
from tests.conftest import tiny_frontend_config

Usage = namedtuple("Usage", "total used free")
SECONDS, RATE = 2.0, 8000


def _files(folder: Path, n: int = 3) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"{i}.flac"  # compressed: the estimate must read the header, not the file size
        sf.write(path, 0.1 * np.sin(np.arange(int(SECONDS * RATE)) * (0.01 + i / 100)), RATE)
        paths.append(path)
    return paths


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**40, 2**40 - free, free))


def test_estimate_is_the_decoded_float32_size(tmp_path):
    cache = DecodedCache(_files(tmp_path), 16000, tmp_path / "cache")
    assert cache.estimate_bytes() == 3 * int(SECONDS * 16000) * 4


def test_too_little_free_space_is_refused_before_any_decode(tmp_path, monkeypatch):
    files = _files(tmp_path)
    _free(monkeypatch, 900)

    def no_decode(*args):
        raise AssertionError("decoded although the disk is too small")

    monkeypatch.setattr(cache_module, "load_audio", no_decode)
    with pytest.raises(ConfigError) as err:
        DecodedCache(files, RATE, tmp_path / "cache").build()
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "cache") in text
    assert "900 B free" in text and "needed for 3 files decoded at 8000 Hz" in text
    assert "AUDIOCLS_CACHE" in text and "free space" in text
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".audiocls-write-test")]


def test_enough_free_space_builds(tmp_path, monkeypatch):
    files = _files(tmp_path)
    _free(monkeypatch, 3 * int(SECONDS * RATE) * 4 + cache_module.MARGIN_BYTES)
    cache = DecodedCache(files, RATE, tmp_path / "cache")
    cache.build()
    assert cache.complete and cache.length(0) == int(SECONDS * RATE)


class _FillsUp:
    """A file whose writes stop with ENOSPC after ``room`` bytes, as a disk that fills does (half a write lands)."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.fh.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_disk_full_mid_write_names_the_cache_and_a_later_run_rebuilds(tmp_path, monkeypatch):
    files, folder = _files(tmp_path), tmp_path / "cache"
    real_open = builtins.open

    def filling_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return _FillsUp(fh, room=5000) if "w" in mode and str(path).endswith("waves.f32") else fh

    monkeypatch.setattr(cache_module, "open", filling_open, raising=False)
    first = DecodedCache(files, RATE, folder)
    with pytest.raises(ConfigError) as err:
        first.build()
    text = str(err.value)
    assert "\n" not in text and str(first.dir) in text and "no space left" in text and "AUDIOCLS_CACHE" in text
    assert list(folder.iterdir()) == [] and not first.complete  # no half-written entry left behind
    monkeypatch.undo()
    again = DecodedCache(files, RATE, folder)  # the disk has room again: the same key, rebuilt whole
    assert again.dir == first.dir and not again.complete
    again.build()
    assert [again.length(i) for i in range(3)] == [int(SECONDS * RATE)] * 3
    assert np.array_equal(again[2], sf.read(files[2], dtype="float32")[0])


def _dataset(tmp_path: Path) -> tuple[ClipDataset, object]:
    cache = DecodedCache(_files(tmp_path), RATE, tmp_path / "cache")
    return ClipDataset(cache, [0, 1, 2], [0, 1, 0], int(0.5 * RATE), train=False), build_frontend(
        tiny_frontend_config(), RATE
    )


def test_spectrogram_store_checks_free_space_before_the_file(tmp_path, monkeypatch):
    ds, frontend = _dataset(tmp_path)
    ds.cache.build()
    path = tmp_path / "store" / "spectrograms-x.npy"
    _free(monkeypatch, 100)
    with pytest.raises(ConfigError, match=r"spectrogram store's cache folder .*store has 100 B free.* needed for"):
        precompute.store_frontend_outputs(ds, frontend, 2, path)
    assert list(path.parent.iterdir()) == []


def test_spectrogram_store_disk_full_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    ds, frontend = _dataset(tmp_path)
    path = tmp_path / "store" / "spectrograms-x.npy"
    real = np.lib.format.open_memmap

    def full(*args, **kwargs):
        out = real(*args, **kwargs)  # the file exists, partly filled, when the disk fills
        out[0] = 1.0
        out.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    with pytest.raises(ConfigError) as err:
        precompute.store_frontend_outputs(ds, frontend, 2, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and "no space left" in str(err.value)
    assert list(path.parent.iterdir()) == []
    monkeypatch.undo()
    precompute.store_frontend_outputs(ds, frontend, 2, path)
    stored = np.load(path)
    assert stored.shape[0] == 3 and np.isfinite(stored).all()
    assert torch.equal(torch.from_numpy(stored[:2]), next(precompute.frontend_batches(ds, frontend, 2)))
