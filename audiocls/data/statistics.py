"""Per-channel statistics of the frontend's output on the training split (``data.normalize: train``).

Measured once at ``setup`` on centre crops without augmentation (never on validation or test clips) and stored
as ``frontend.mean``/``frontend.std``, so the frontend itself normalises (one tail,
:func:`audiocls.audio.frontend.normalise`) and a checkpoint rebuilds the same input.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from audiocls.audio.frontend import LogMelFrontend
from audiocls.data.clips import ClipDataset
from audiocls.data.precompute import SpecDataset, frontend_batches
from audiocls.errors import ConfigError

__all__ = ["channel_stats", "training_stats"]


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


def training_stats(
    train: ClipDataset | SpecDataset, raw: LogMelFrontend, batch_size: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`channel_stats` of the training split: its stored raw images, or ``raw``'s output on its clips as
    centre crops (no augmentation, in order)."""
    if isinstance(train, SpecDataset):
        return channel_stats(train.batches(batch_size))
    view = ClipDataset(train.cache, train.indices, train.labels, train.clip_samples, False)
    return channel_stats(frontend_batches(view, raw, batch_size))
