"""The decoded-audio cache: every file decoded and resampled once, stored memory-mapped, rebuilt when files change.

The cache holds every clip of a dataset decoded (:func:`~audiocls.data.io.load_audio`) and resampled to the
target rate, concatenated in one raw float32 file that is memory-mapped, plus an index of offsets. It is keyed
by a hash of the file list (paths, sizes, modification times) and the sample rate, so it is rebuilt whenever
files change and an epoch never decodes or resamples again. Files that fail to decode are recorded in the index
(with the reason) as empty entries; what happens to them (skip or stop) is the datamodule's policy, so changing
that policy never re-decodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audiocls.data.io import decoded_samples, load_audio
from audiocls.data.suspicious import AudioFacts, truncation
from audiocls.errors import AudioLoadError
from audiocls.files import atomic_folder, check_free_space, disk_write_error, hash_files, writable_dir

log = logging.getLogger(__name__)

__all__ = ["DecodedCache", "default_cache_dir", "check_cache_dir", "CACHE_VERSION"]


CACHE_VERSION = "v2"


def default_cache_dir() -> Path:
    """``$AUDIOCLS_CACHE`` or ``~/.cache/audiocls``."""
    return Path(os.environ.get("AUDIOCLS_CACHE", Path.home() / ".cache" / "audiocls"))


#: what the errors about the cache folder advise
_FIX = "set AUDIOCLS_CACHE (or data.cache_dir) to a writable folder with free space"
#: space kept free beyond the estimate (the index, the offsets, a resampler's rounding)
MARGIN_BYTES = 16 * 2**20


def check_cache_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable, before a cache is written there.

    Raises:
        ConfigError: naming the folder and ``AUDIOCLS_CACHE`` (a read-only ``$HOME``, a path through a file, ...).
    """
    writable_dir(folder, "the decoded-audio cache folder", _FIX)


def _decode(args: tuple[Path, int]) -> tuple[np.ndarray, str | None] | str:
    """The wave and its truncation note (:func:`~audiocls.data.suspicious.truncation`), or why it failed."""
    try:
        wave = load_audio(*args)
    except AudioLoadError as err:
        return str(err)
    return wave, truncation(args[0])


class DecodedCache:
    """Every clip of a file list, decoded once at one sample rate, memory-mapped from disk.

    Args:
        files: the audio files, in dataset order.
        sample_rate: target rate in Hz.
        cache_dir: where cache folders live; one sub-folder per (file list, rate) hash.
        workers: decoding threads for :meth:`build` (soundfile and torchaudio release the GIL);
            ``None`` takes ``min(4, cpu count)``.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        sample_rate: int,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
    ):
        self.files = [Path(f) for f in files]
        self.sample_rate = int(sample_rate)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.dir = Path(cache_dir or default_cache_dir()) / f"decoded-{self.key()}"
        self._waves: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._bad: dict[int, str] | None = None
        self._index: dict | None = None

    def key(self) -> str:
        """Hash of the file list (path, size, mtime) and the sample rate."""
        h = hashlib.sha1(f"{CACHE_VERSION}:{self.sample_rate}".encode())
        hash_files(h, self.files)
        return h.hexdigest()[:16]

    @property
    def complete(self) -> bool:
        return (self.dir / "index.json").is_file()

    def build(self) -> None:
        """Decode every file and write the cache; a no-op when it is already complete.

        Files are decoded in parallel threads and streamed to disk in order, so memory holds a few clips, not
        the dataset. Written to a temporary folder and renamed, so a killed build never leaves a cache that
        looks complete; files that fail to decode are recorded in the index, not raised (see :attr:`bad`).
        """
        if self.complete:
            return
        check_cache_dir(self.dir.parent)
        need = self.estimate_bytes() + MARGIN_BYTES
        purpose = f"{len(self.files)} files decoded at {self.sample_rate} Hz"
        fix = "set AUDIOCLS_CACHE (or data.cache_dir) to a folder on a larger disk"
        check_free_space(self.dir.parent, need, "the decoded-audio cache folder", fix, purpose=purpose)
        log.info("decoding %d files at %d Hz into %s", len(self.files), self.sample_rate, self.dir)
        try:
            bad = self._write()
        except OSError as err:
            error = disk_write_error(err, self.dir, "the decoded-audio cache folder", _FIX)
            if error is None:
                raise
            raise error from err
        if bad:
            log.warning("%d of %d files could not be decoded (recorded in %s)", len(bad), len(self.files), self.dir)

    def estimate_bytes(self) -> int:
        """Bytes the decoded waves will take (float32 at :attr:`sample_rate`), from the files' headers."""
        with ThreadPoolExecutor(self.workers) as pool:
            return 4 * sum(pool.map(decoded_samples, self.files, [self.sample_rate] * len(self.files)))

    def _write(self) -> dict[int, str]:
        """Decode into a temporary folder renamed to :attr:`dir`; returns the files that failed to decode."""
        # another process may finish first: then theirs is kept
        with atomic_folder(self.dir, lambda: self.complete) as tmp:
            lengths, bad = np.zeros(len(self.files), dtype=np.int64), {}
            peaks, truncated = [0.0] * len(self.files), {}
            jobs = [(f, self.sample_rate) for f in self.files]
            with open(tmp / "waves.f32", "wb") as out, ThreadPoolExecutor(self.workers) as pool:
                for i, result in enumerate(pool.map(_decode, jobs)):  # map keeps the order
                    if isinstance(result, str):
                        bad[i] = result
                        continue
                    wave, note = result
                    out.write(wave.tobytes())
                    lengths[i], peaks[i] = len(wave), float(np.abs(wave).max())
                    if note:
                        truncated[i] = note
            np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
            index = {"sample_rate": self.sample_rate, "files": [str(f) for f in self.files], "bad": bad}
            index |= {"peaks": peaks, "truncated": truncated}
            (tmp / "index.json").write_text(json.dumps(index))
        return bad

    def _read_index(self) -> dict:
        if self._index is None:
            self.build()
            self._index = json.loads((self.dir / "index.json").read_text())
        return self._index

    @property
    def bad(self) -> dict[int, str]:
        """Index -> reason, for every file that could not be decoded (builds the cache if needed)."""
        if self._bad is None:
            self._bad = {int(k): v for k, v in self._read_index().get("bad", {}).items()}
        return self._bad

    def facts(self, i: int) -> AudioFacts:
        """Length, peak and truncation note of clip ``i``, as recorded when it was decoded.

        A cache built before peaks were recorded measures the peak from the stored wave and knows no truncation.
        """
        index = self._read_index()
        peaks = index.get("peaks")
        peak = peaks[i] if peaks is not None else float(np.abs(self[i]).max(initial=0.0))
        return AudioFacts(self.length(i) / self.sample_rate, peak, index.get("truncated", {}).get(str(i)))

    def _open(self) -> None:
        if self._waves is None:
            self.build()
            self._offsets = np.load(self.dir / "offsets.npy")
            total = int(self._offsets[-1])
            self._waves = (
                np.memmap(self.dir / "waves.f32", dtype=np.float32, mode="r", shape=(total,))
                if total
                else np.zeros(0, np.float32)
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        """wave (T_i,) float32 of clip ``i`` (a view into the memory map; empty for a bad file)."""
        self._open()
        return self._waves[self._offsets[i] : self._offsets[i + 1]]

    def length(self, i: int) -> int:
        self._open()
        return int(self._offsets[i + 1] - self._offsets[i])

    def __getstate__(self) -> dict:  # DataLoader workers reopen the memory map themselves
        state = self.__dict__.copy()
        state["_waves"] = None
        return state
