"""Spectrograms computed once per clip (``data.precompute_frontend``), stored and memory-mapped.

This serves CPU training. Without waveform augmentation every epoch would recompute the same spectrograms, and
at 44.1 kHz the paper's three-resolution frontend costs about twice what a small backbone does; computing them
once at ``setup`` and training on the stored images (with the spectrogram-side augmentation per batch) removes
that. The images are computed batch by batch on the run's device into one ``.npy`` file in the cache folder,
keyed by the clips and the frontend (:func:`store_path`), written once (atomically) and memory-mapped by every
process, as the decoded audio is (:mod:`audiocls.data.cache`); :func:`store_spectrograms` does that for every
split of a datamodule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiocls.audio.augment import WAVE, steps_on
from audiocls.audio.frontend import LogMelFrontend
from audiocls.data.cache import default_cache_dir
from audiocls.data.clips import ClipDataset
from audiocls.errors import ConfigError
from audiocls.files import check_free_space, disk_write_error

__all__ = [
    "SpecDataset",
    "store_path",
    "store_frontend_outputs",
    "check_speed_settings",
    "precompute_hint",
    "frontend_batches",
    "store_spectrograms",
]

log = logging.getLogger(__name__)

#: part of every stored file's key: bump it when the frontend's output changes, so older files are not read
STORE_VERSION = "v1"
#: what the errors about the store's folder advise
_FIX = "set AUDIOCLS_CACHE (or data.cache_dir) to a writable folder on a larger disk"


class SpecDataset(Dataset):
    """Stored spectrograms: ``(spec (C, F, T) or (W, C, F, T) float32, label)`` per clip.

    Args:
        specs: (N, C, F, T) or (N, W, C, F, T), the frontend's output of every clip, in order: a tensor or an
            array (the memory map of :func:`store_frontend_outputs`, which DataLoader workers map themselves).
        labels: the class index of each clip.
        indices: the clips' entries in ``cache`` (as in :class:`~audiocls.data.clips.ClipDataset`).
        cache: the dataset's decoded audio, kept for the file names (``cache.files[indices[i]]``).
    """

    def __init__(self, specs: torch.Tensor | np.ndarray, labels: Sequence[int], indices: Sequence[int], cache=None):
        if len(specs) != len(labels):
            raise ValueError(f"{len(specs)} spectrograms for {len(labels)} labels")
        self.specs, self.labels, self.indices, self.cache = specs, list(labels), list(indices), cache

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        spec = self.specs[i]
        return (torch.from_numpy(np.array(spec)) if isinstance(spec, np.ndarray) else spec), self.labels[i]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The stored images in order, ``batch_size`` at a time, as tensors (one chunk of the map in memory)."""
        for start in range(0, len(self), batch_size):
            yield torch.as_tensor(np.array(self.specs[start : start + batch_size]))

    def __getstate__(self) -> dict:  # a worker maps the file itself instead of receiving a pickled copy of it
        state = self.__dict__.copy()
        if isinstance(self.specs, np.memmap):
            state["specs"] = Path(self.specs.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if isinstance(self.specs, Path):
            self.specs = np.load(self.specs, mmap_mode="r")


@torch.no_grad()
def frontend_batches(
    dataset: Dataset,
    frontend: LogMelFrontend,
    batch_size: int,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> Iterator[torch.Tensor]:
    """The frontend's output on ``dataset`` in order, one batch of ``batch_size`` clips at a time, on the CPU.

    The batches are the ones an in-order evaluation loader of that batch size makes, and the frontend runs on
    ``device`` (moved there), so each image is bit-for-bit what the per-batch path on that device computes for
    it. Yields (B, C, F, T) for waves (T,), (B, W, C, F, T) for windowed clips (W, T).
    """
    device = torch.device(device)
    frontend = frontend.to(device)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    for wave, *_ in loader:
        wave = wave.to(device, non_blocking=True)
        if wave.ndim == 3:
            b, w, t = wave.shape
            spec = frontend(wave.reshape(b * w, t))
            yield spec.reshape(b, w, *spec.shape[1:]).cpu()
        else:
            yield frontend(wave).cpu()


def store_path(
    dataset: ClipDataset, frontend: LogMelFrontend, batch_size: int, device: torch.device | str, root: Path
) -> Path:
    """``root/spectrograms-<key>.npy``: the key hashes the decoded cache (files, rate), the split's clips, crop and
    windows, the frontend's settings, the batch size and the device type (the images are bit-exact for those)."""
    config = json.dumps(asdict(frontend.config), sort_keys=True, default=str)
    h = hashlib.sha1(f"{STORE_VERSION}:{dataset.cache.dir.name}:{dataset.clip_samples}:{dataset.windows}".encode())
    h.update(f"{config}:{batch_size}:{torch.device(device).type}".encode())
    h.update(np.asarray(dataset.indices, dtype=np.int64).tobytes())
    return Path(root) / f"spectrograms-{h.hexdigest()[:16]}.npy"


def store_frontend_outputs(
    dataset: Dataset,
    frontend: LogMelFrontend,
    batch_size: int,
    path: Path,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> None:
    """Write the frontend's output on ``dataset`` to ``path`` (``.npy``, (N, C, F, T) or (N, W, C, F, T)) unless it
    exists: batch by batch on ``device`` (:func:`frontend_batches`) into a preallocated memory map, so memory holds
    one batch, not the split; written under a temporary name and renamed, so a killed run leaves no partial file.

    The free space is checked once the first batch gives the image size, before the file is created: a memory map
    over a full disk would stop the process with SIGBUS, not an error. A disk that fills anyway (another writer)
    is one :class:`ConfigError` naming the file, and the temporary file is removed.
    """
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        out, start = None, 0
        for spec in frontend_batches(dataset, frontend, batch_size, device, num_workers):
            if out is None:
                shape = (len(dataset), *spec.shape[1:])
                need = 4 * math.prod(shape) + 2**20  # + the .npy header and a margin
                purpose = f"the spectrograms of {len(dataset)} clips"
                check_free_space(path.parent, need, "the spectrogram store's cache folder", _FIX, purpose=purpose)
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            out[start : start + len(spec)] = spec.numpy()
            start += len(spec)
        if out is None:
            np.save(tmp, np.zeros(0, np.float32))
        else:
            out.flush()
            del out
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        error = disk_write_error(err, path, "the spectrogram store", _FIX)
        if error is None:
            raise
        raise error from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def store_spectrograms(
    splits: dict[str, ClipDataset], raw: LogMelFrontend, batch_size: int, trainer: Any, cache_dir, num_workers: int
) -> dict[str, SpecDataset]:
    """Every split's raw spectrograms, computed on the trainer's device into a file of the cache folder by one
    process per node (local rank 0; the others wait at a barrier), then memory-mapped by every process."""
    strategy = getattr(trainer, "strategy", None)
    device = getattr(strategy, "root_device", torch.device("cpu"))
    root = Path(cache_dir or default_cache_dir())
    views, paths = {}, {}
    for name, ds in splits.items():  # training clips as centre crops: one fixed image per clip
        views[name] = ClipDataset(ds.cache, ds.indices, ds.labels, ds.clip_samples, False, ds.windows)
        paths[name] = store_path(views[name], raw, batch_size, device, root)
    if getattr(trainer, "local_rank", 0) == 0:
        todo = [name for name, path in paths.items() if not path.is_file()]
        if todo:
            log.info("computing the spectrograms of %s on %s into %s", todo, device, root)
        for name in todo:
            store_frontend_outputs(views[name], raw, batch_size, paths[name], device, num_workers)
    if strategy is not None:
        strategy.barrier("audiocls_store_spectrograms")
    stored = {}
    for name, path in paths.items():
        ds = splits[name]
        stored[name] = SpecDataset(np.load(path, mmap_mode="r"), ds.labels, ds.indices, ds.cache)
    shapes = {name: tuple(ds.specs.shape) for name, ds in stored.items()}
    log.info("spectrograms of %s memory-mapped from %s", shapes, root)
    return stored


def check_speed_settings(frontend, augment, normalize, precompute: bool) -> None:
    """:class:`ConfigError` for ``data.normalize`` / ``data.precompute_frontend`` settings that cannot work."""
    if normalize not in (None, "train"):
        raise ConfigError(f"data.normalize={normalize!r}: choose 'train' (measure on the training split) or null")
    if normalize == "train" and (frontend.mean is not None or frontend.std is not None):
        raise ConfigError(
            f"data.normalize=train measures frontend.mean/std, but the config sets them (mean={frontend.mean}, "
            f"std={frontend.std}): set frontend.mean and frontend.std to null, or data.normalize to null"
        )
    on = steps_on(augment, WAVE)
    if precompute and on:
        shown = ", ".join(f"augment.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in on.items())
        raise ConfigError(
            f"data.precompute_frontend=true computes each clip's spectrogram once, so the waveform augmentation "
            f"({shown}) cannot be drawn per epoch: set it off (augment.time_roll and the masks act on the "
            "spectrogram and still run) or set data.precompute_frontend=false"
        )


def precompute_hint(augment, train: Dataset | None, trainer: Any) -> str | None:
    """The notice for a CPU fit that recomputes the same spectrograms every epoch, else ``None``.

    That is a fit on a CPU accelerator with no waveform augmentation whose training clips are all at most the
    crop length (so no random crop either): each epoch's frontend output is then the one
    ``data.precompute_frontend: true`` would store once at setup, and the per-batch frontend only costs time.
    """
    from lightning.pytorch.accelerators import CPUAccelerator  # the datamodule has imported Lightning already

    if not isinstance(getattr(trainer, "accelerator", None), CPUAccelerator):
        return None
    if steps_on(augment, WAVE) or not isinstance(train, ClipDataset):
        return None
    if any(train.cache.length(i) > train.clip_samples for i in train.indices):
        return None  # random crops: each epoch's clips differ
    return (
        "data.precompute_frontend=false on a CPU, with no waveform augmentation and no clip longer than the crop: "
        "every epoch recomputes the same spectrograms. data.precompute_frontend=true computes them once at setup "
        "and trains on the same images with shorter epochs (the CPU recipes do; benchmarks/input_pipeline.py "
        "measures the difference)"
    )
