"""Audio I/O in one place: decode with soundfile, downmix, resample once, pad or crop, and a decoded-audio cache.

The cache holds every clip of a dataset decoded and resampled to the target rate, concatenated in one
float32 ``.npy`` file that is memory-mapped, plus an index of offsets. It is keyed by a hash of the file
list (paths, sizes, modification times) and the sample rate, so it is rebuilt whenever files change and an
epoch never decodes or resamples again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiocls.errors import AudioLoadError

__all__ = ["load_audio", "pad_or_crop", "DecodedCache", "default_cache_dir"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$AUDIOCLS_CACHE`` or ``~/.cache/audiocls``."""
    return Path(os.environ.get("AUDIOCLS_CACHE", Path.home() / ".cache" / "audiocls"))


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode one file to a mono float32 wave at ``sample_rate``.

    Args:
        path: any file soundfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1, AU, ...).
        sample_rate: target rate in Hz; the file is resampled with torchaudio when it differs.

    Returns:
        wave (T,) float32.

    Raises:
        AudioLoadError: the file is missing, unreadable, empty or not finite; the message names it.
    """
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ... on bad input
        raise AudioLoadError(f"cannot decode audio file {path}: {err}") from err
    if data.size == 0:
        raise AudioLoadError(f"audio file {path} holds no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioLoadError(f"audio file {path} holds NaN or infinite samples")
    if sr != sample_rate:
        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), sr, sample_rate).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32)


def pad_or_crop(wave: np.ndarray, length: int, *, offset: int | None = None) -> np.ndarray:
    """Zero-pad (at the end) or crop ``wave (T,)`` to ``length`` samples.

    Args:
        wave: (T,) float32.
        length: output length in samples.
        offset: crop start when ``T > length``; ``None`` takes the centre crop.

    Returns:
        (length,) float32.
    """
    n = wave.shape[0]
    if n == length:
        return wave
    if n < length:
        out = np.zeros(length, dtype=np.float32)
        out[:n] = wave
        return out
    start = (n - length) // 2 if offset is None else int(min(max(offset, 0), n - length))
    return wave[start : start + length]


class DecodedCache:
    """Every clip of a file list, decoded once at one sample rate, memory-mapped from disk.

    Args:
        files: the audio files, in dataset order.
        sample_rate: target rate in Hz.
        cache_dir: where cache folders live; one sub-folder per (file list, rate) hash.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int, cache_dir: str | Path | None = None):
        self.files = [Path(f) for f in files]
        self.sample_rate = int(sample_rate)
        self.dir = Path(cache_dir or default_cache_dir()) / f"decoded-{self.key()}"
        self._waves: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    def key(self) -> str:
        """Hash of the file list (path, size, mtime) and the sample rate."""
        h = hashlib.sha1(f"v1:{self.sample_rate}".encode())
        for f in self.files:
            try:
                st = f.stat()
                h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{f}:missing\n".encode())
        return h.hexdigest()[:16]

    @property
    def complete(self) -> bool:
        return (self.dir / "index.json").is_file()

    def build(self) -> None:
        """Decode every file and write the cache; a no-op when it is already complete.

        Written to a temporary folder and renamed, so a killed build never leaves a cache that looks complete.
        """
        if self.complete:
            return
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        log.info("decoding %d files at %d Hz into %s", len(self.files), self.sample_rate, self.dir)
        waves = [load_audio(f, self.sample_rate) for f in self.files]
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.dir.parent))
        np.save(tmp / "waves.npy", np.concatenate(waves) if waves else np.zeros(0, np.float32))
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "index.json").write_text(
            json.dumps({"sample_rate": self.sample_rate, "files": [str(f) for f in self.files]})
        )
        try:
            tmp.rename(self.dir)
        except OSError:  # another process finished first: keep theirs
            if not self.complete:
                raise
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()

    def _open(self) -> None:
        if self._waves is None:
            self.build()
            self._waves = np.load(self.dir / "waves.npy", mmap_mode="r")
            self._offsets = np.load(self.dir / "offsets.npy")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        """wave (T_i,) float32 of clip ``i`` (a view into the memory map)."""
        self._open()
        return self._waves[self._offsets[i] : self._offsets[i + 1]]

    def length(self, i: int) -> int:
        self._open()
        return int(self._offsets[i + 1] - self._offsets[i])

    def __getstate__(self) -> dict:  # DataLoader workers reopen the memory map themselves
        state = self.__dict__.copy()
        state["_waves"] = None
        return state
