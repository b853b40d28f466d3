"""Spectrograms computed once per clip (``data.precompute_frontend``) and per-channel statistics of a split.

Both serve CPU training. Without waveform augmentation every epoch would recompute the same spectrograms, and
at 44.1 kHz the paper's three-resolution frontend costs about twice what a small backbone does; computing them
once at ``setup`` and training on the stored images (with the spectrogram-side augmentation per batch) removes
that. The images are computed batch by batch on the run's device into one ``.npy`` file in the cache folder,
keyed by the clips and the frontend (:func:`store_path`), written once (atomically) and memory-mapped by every
process, as the decoded audio is (:mod:`audiocls.data.cache`). :func:`channel_stats` measures the per-channel
mean and std of the frontend's output on the training split for ``data.normalize: train``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiocls.audio.frontend import LogMelFrontend, build_frontend
from audiocls.data.clips import ClipDataset
from audiocls.errors import ConfigError

__all__ = [
    "SpecDataset",
    "store_path",
    "store_frontend_outputs",
    "check_speed_settings",
    "precompute_hint",
    "compute_stats",
    "frontend_batches",
    "channel_stats",
    "normalise",
]

log = logging.getLogger(__name__)

#: the augmentation steps that act on the waveform, before the frontend (a stored spectrogram cannot have them)
WAVE_AUGMENT = ("gain_db", "shift", "pitch_shift", "time_stretch")
#: part of every stored file's key: bump it when the frontend's output changes, so older files are not read
STORE_VERSION = "v1"


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
    one batch, not the split; written under a temporary name and renamed, so a killed run leaves no partial file."""
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
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            out[start : start + len(spec)] = spec.numpy()
            start += len(spec)
        if out is None:
            np.save(tmp, np.zeros(0, np.float32))
        else:
            out.flush()
            del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@torch.no_grad()
def channel_stats(batches: Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over ``batches`` of spec (B, C, F, T) (float64 sums), rounded to 6 digits."""
    total = sq = None
    count = 0
    for spec in batches:
        spec = spec.double()
        s, q = spec.sum((0, 2, 3)), (spec**2).sum((0, 2, 3))
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += spec.numel() // spec.shape[1]
    if total is None or count == 0:
        raise ConfigError("data.normalize=train: the training split is empty; check data.root and data.fold")
    mean = total / count
    std = (sq / count - mean**2).clamp_min(0).sqrt()
    if (std <= 0).any():
        raise ConfigError(f"data.normalize=train: a frontend channel is constant over the training split (std {std})")
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def normalise(spec: torch.Tensor, frontend: LogMelFrontend) -> torch.Tensor:
    """The frontend's own normalisation tail (``- mean``, then ``/ std``) on a raw spec ``(..., C, F, T)``.

    The same float32 operations as :class:`LogMelFrontend.forward`, so a stored raw image normalised here equals
    the frontend's output exactly.
    """
    cfg = frontend.config
    if cfg.mean is not None:
        spec = spec - frontend.mean.to(spec.device)
    if cfg.std is not None:
        spec = spec / frontend.std.to(spec.device)
    return spec


def check_speed_settings(frontend, augment, normalize, precompute: bool) -> None:
    """:class:`ConfigError` for ``data.normalize`` / ``data.precompute_frontend`` settings that cannot work."""
    if normalize not in (None, "train"):
        raise ConfigError(f"data.normalize={normalize!r}: choose 'train' (measure on the training split) or null")
    if normalize == "train" and (frontend.mean is not None or frontend.std is not None):
        raise ConfigError(
            f"data.normalize=train measures frontend.mean/std, but the config sets them (mean={frontend.mean}, "
            f"std={frontend.std}): set frontend.mean and frontend.std to null, or data.normalize to null"
        )
    wave = {k: getattr(augment, k) for k in WAVE_AUGMENT}
    on = {k: v for k, v in wave.items() if v}
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
    if any(getattr(augment, k) for k in WAVE_AUGMENT) or not isinstance(train, ClipDataset):
        return None
    if any(train.cache.length(i) > train.clip_samples for i in train.indices):
        return None  # random crops: each epoch's clips differ
    return (
        "data.precompute_frontend=false on a CPU, with no waveform augmentation and no clip longer than the crop: "
        "every epoch recomputes the same spectrograms. data.precompute_frontend=true computes them once at setup "
        "and trains on the same images with shorter epochs (the CPU recipes do; benchmarks/input_pipeline.py "
        "measures the difference)"
    )


@torch.no_grad()
def compute_stats(
    datamodule: Any, max_batches: int | None = None, per_channel: bool = True
) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[float, float]:
    """Mean and std of the frontend's output over a datamodule's training split, without augmentation.

    Put the result in ``frontend.mean`` / ``frontend.std`` to normalise with training-set statistics. The
    datamodule's own normalisation (if any) is ignored, so the figures are always of the raw log-mel.

    Args:
        datamodule: set up (or set-up-able) datamodule; its training loader is read once, in order.
        max_batches: stop after this many batches (``None`` reads the whole training split).
        per_channel: one (mean, std) per channel when True, one pair for all channels otherwise.

    Returns:
        ``(means, stds)`` as tuples of floats (one per channel), or two floats when ``per_channel`` is False.
    """
    datamodule.setup("fit")
    frontend = build_frontend(replace(datamodule.frontend.config, mean=None, std=None), datamodule.sample_rate)
    total = sq = count = None
    loader = torch.utils.data.DataLoader(datamodule.splits["train"], batch_size=datamodule.batch_size)
    for i, (wave, *_rest) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        spec = frontend(wave).double()  # (B, C, n_mels, frames)
        dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
        s, q, n = spec.sum(dims), (spec**2).sum(dims), spec.numel() / (1 if not per_channel else spec.shape[1])
        total, sq, count = (s, q, n) if total is None else (total + s, sq + q, count + n)
    if total is None:
        raise ConfigError("compute_stats: the training split is empty; check data.root and data.fold")
    mean = total / count
    std = (sq / count - mean**2).clamp_min(0).sqrt()
    log.info("frontend statistics over %d values: mean %s std %s", int(count), mean.tolist(), std.tolist())
    if per_channel:
        return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
    return round(mean.item(), 6), round(std.item(), 6)
