"""Spectrograms computed once per clip (``data.precompute_frontend``) and per-channel statistics of a split.

Both serve CPU training. Without waveform augmentation every epoch would recompute the same spectrograms, and
at 44.1 kHz the paper's three-resolution frontend costs about twice what a small backbone does; computing them
once at ``setup`` and training on the stored images (with the spectrogram-side augmentation per batch) removes
that. :func:`channel_stats` measures the per-channel mean and std of the frontend's output on the training split
for ``data.normalize: train``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from audiocls.audio.frontend import LogMelFrontend, build_frontend
from audiocls.data.clips import ClipDataset
from audiocls.errors import ConfigError

__all__ = [
    "SpecDataset",
    "check_speed_settings",
    "precompute_hint",
    "compute_stats",
    "frontend_batches",
    "frontend_outputs",
    "channel_stats",
    "normalise",
]

log = logging.getLogger(__name__)

#: the augmentation steps that act on the waveform, before the frontend (a stored spectrogram cannot have them)
WAVE_AUGMENT = ("gain_db", "shift", "pitch_shift", "time_stretch")


class SpecDataset(Dataset):
    """Stored spectrograms: ``(spec (C, F, T) or (W, C, F, T) float32, label)`` per clip.

    Args:
        specs: (N, C, F, T) or (N, W, C, F, T), the frontend's output of every clip, in order.
        labels: the class index of each clip.
        indices: the clips' entries in ``cache`` (as in :class:`~audiocls.data.clips.ClipDataset`).
        cache: the dataset's decoded audio, kept for the file names (``cache.files[indices[i]]``).
    """

    def __init__(self, specs: torch.Tensor, labels: Sequence[int], indices: Sequence[int], cache=None):
        if len(specs) != len(labels):
            raise ValueError(f"{len(specs)} spectrograms for {len(labels)} labels")
        self.specs, self.labels, self.indices, self.cache = specs, list(labels), list(indices), cache

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.specs[i], self.labels[i]


@torch.no_grad()
def frontend_batches(dataset: Dataset, frontend: LogMelFrontend, batch_size: int) -> Iterator[torch.Tensor]:
    """The frontend's output on ``dataset`` in order, one batch of ``batch_size`` clips at a time (CPU).

    The batches are the ones an in-order evaluation loader of that batch size makes, so each image is
    bit-for-bit what the per-batch path computes for it. Yields (B, C, F, T) for waves (T,), (B, W, C, F, T)
    for windowed clips (W, T).
    """
    for wave, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        if wave.ndim == 3:
            b, w, t = wave.shape
            spec = frontend(wave.reshape(b * w, t))
            yield spec.reshape(b, w, *spec.shape[1:]).cpu()
        else:
            yield frontend(wave).cpu()


def frontend_outputs(dataset: Dataset, frontend: LogMelFrontend, batch_size: int) -> torch.Tensor:
    """All of :func:`frontend_batches` as one tensor: (N, C, F, T) or (N, W, C, F, T) float32."""
    out = list(frontend_batches(dataset, frontend, batch_size))
    return torch.cat(out) if out else torch.empty(0)


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
