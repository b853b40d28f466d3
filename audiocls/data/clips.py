"""Clips, the dataset over the cache, folds and metadata CSVs: what every dataset module builds on."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from audiocls.data.cache import DecodedCache
from audiocls.data.io import pad_or_crop, sliding_windows
from audiocls.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["Clip", "ClipDataset", "stratified_folds", "grouped_val_split", "read_metadata_csv"]


@dataclass(frozen=True)
class Clip:
    """One labelled audio file.

    Args:
        path: the audio file.
        label: class index in ``0..num_classes-1``; for a multi-label clip its first label (stratification,
            validation split).
        fold: official fold id (1-based), when the dataset has folds.
        group: the source recording the clip was cut from (ESC-50's ``src_file``, UrbanSound8K's ``fsID``,
            FSDD's speaker under the speaker split); clips of one group never straddle train and validation.
            ``None``: the clip is its own group.
        labels: every class index of a multi-label clip (``task: multilabel``), ``label`` among them; ``None``
            for a single-label clip.
    """

    path: Path
    label: int
    fold: int | None = None
    group: str | None = None
    labels: tuple[int, ...] | None = None

    def multi_hot(self, num_classes: int) -> torch.Tensor:
        """(num_classes,) float32 target: 1 for each of ``labels`` (or ``label``), else 0."""
        target = torch.zeros(num_classes)
        target[list(self.labels if self.labels is not None else (self.label,))] = 1.0
        return target


class ClipDataset(Dataset):
    """Fixed-length waveforms of some clips of a :class:`DecodedCache`.

    Args:
        cache: the decoded audio of the whole dataset.
        indices: which entries of ``cache`` belong to this split.
        labels: the class index of each entry of ``indices``.
        clip_samples: output length; longer clips are cropped, shorter ones zero-padded at the end.
        train: random crop when True, centre crop otherwise.
        windows: ``(total, hop)`` in samples: each clip is padded or centre-cropped to ``total`` and returned
            as ``(W, clip_samples)`` windows ``hop`` apart (evaluation of long clips); ``None`` for one crop.
    """

    def __init__(
        self,
        cache: DecodedCache,
        indices: Sequence[int],
        labels: Sequence[int],
        clip_samples: int,
        train: bool,
        windows: tuple[int, int] | None = None,
    ):
        self.cache, self.indices, self.labels = cache, list(indices), list(labels)
        self.clip_samples, self.train, self.windows = clip_samples, train, windows

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(wave (clip_samples,) or windows (W, clip_samples) float32, label)."""
        wave = self.cache[self.indices[i]]
        if self.windows is not None:
            total, hop = self.windows
            return torch.from_numpy(sliding_windows(wave, total, self.clip_samples, hop)), self.labels[i]
        offset = None
        if self.train and len(wave) > self.clip_samples:
            offset = int(torch.randint(0, len(wave) - self.clip_samples + 1, ()).item())
        return torch.from_numpy(np.array(pad_or_crop(wave, self.clip_samples, offset=offset))), self.labels[i]


def stratified_folds(keys: Sequence[str], labels: Sequence[int], num_folds: int, seed: int) -> list[int]:
    """Seeded, class-stratified fold ids (1-based) that depend on the clips, not on their listing order.

    Each class's clips are sorted by ``keys`` (e.g. file names), shuffled with ``seed`` and dealt round-robin
    into ``num_folds`` folds, so every fold holds ``n_class / num_folds`` clips of every class (+-1).

    Args:
        keys: a stable identifier of each clip (unique).
        labels: class index of each clip.
        num_folds: how many folds.
        seed: the folds are a function of this seed and the set of (key, label) pairs.

    Returns:
        the fold of each clip, aligned with ``keys``.
    """
    rng = np.random.default_rng(seed)
    folds = [0] * len(keys)
    for label in sorted(set(labels)):
        members = sorted((i for i in range(len(keys)) if labels[i] == label), key=lambda i: keys[i])
        for rank, j in enumerate(rng.permutation(len(members))):
            folds[members[j]] = rank % num_folds + 1
    return folds


def grouped_val_split(clips: Sequence[Clip], candidates: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Indices of ``candidates`` moved to validation: whole groups, about ``fraction`` of every class.

    Groups (:attr:`Clip.group`; a clip without one is its own group) are never split. Each group counts for
    its majority class; per class, the groups are shuffled with ``seed`` and taken while that brings the
    class's validation count closer to ``round(n_class * fraction)``, so a class of single-clip groups gets
    exactly that many and a class of few large groups gets the nearest whole-group count. A class with at
    least two groups gives at least one (its smallest, first in the shuffled order) however small
    ``fraction`` is; a class with a single group keeps it for training.

    Args:
        clips: every clip of the dataset.
        candidates: indices into ``clips`` that may go to validation (the training folds).
        fraction: target share of each class.
        seed: the split is a function of this seed and the clips.

    Returns:
        sorted indices into ``clips``.
    """
    if fraction <= 0:
        return []
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i in candidates:
        key = clips[i].group if clips[i].group is not None else f"\0{clips[i].path}"
        groups.setdefault(key, []).append(i)
    per_class: dict[int, list[str]] = {}
    for key in sorted(groups):
        labels = [clips[i].label for i in groups[key]]
        per_class.setdefault(max(set(labels), key=lambda y: (labels.count(y), -y)), []).append(key)
    val: list[int] = []
    for label in sorted(per_class):
        keys = per_class[label]
        target = round(sum(len(groups[k]) for k in keys) * fraction)
        taken, order = 0, rng.permutation(len(keys))
        for j in order:
            size = len(groups[keys[j]])
            if abs(taken + size - target) < abs(taken - target):
                taken += size
                val += groups[keys[j]]
        if not taken and len(keys) > 1:
            val += groups[keys[min(order, key=lambda j: len(groups[keys[j]]))]]
    return sorted(val)


def read_metadata_csv(
    meta: Path, columns: Sequence[str], int_columns: Sequence[str], missing: str
) -> list[dict[str, str]]:
    """Rows of a dataset's metadata CSV, checked: the official ``columns`` present, ``int_columns`` integers.

    Args:
        meta: the CSV file.
        columns: the columns of the official release.
        int_columns: columns whose every value must be a non-negative integer (folds, class ids).
        missing: the message (layout and fix) when ``meta`` does not exist.

    Raises:
        DataError: the file is missing, empty, lacks columns, or holds a non-integer id; the message names it.
    """
    if not meta.is_file():
        raise DataError(missing)
    with meta.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    absent = [c for c in columns if rows and c not in rows[0]]
    if not rows or absent:
        raise DataError(f"{meta} is empty or lacks the official columns {absent or list(columns)}")
    for n, r in enumerate(rows, start=2):
        bad = [c for c in int_columns if not (r[c] or "").strip().isdigit()]
        if bad:
            values = " and ".join(f"{c} {r[c]!r}" for c in int_columns)
            raise DataError(f"{meta} line {n}: {values} must be integers")
    return rows
