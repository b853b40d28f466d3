"""Which clip goes where: the checks on a clip list and its folds, and the train/validation/test split.

``test`` is the held-out fold; validation is a whole training fold (``val_fold``) or ``val_fraction`` of every
class carved from the training folds (seeded, stratified, whole source recordings:
:func:`~audiocls.data.clips.grouped_val_split`); training is the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from audiocls.data.clips import Clip, grouped_val_split
from audiocls.errors import ConfigError, DataError

__all__ = [
    "check_clips",
    "check_fold",
    "check_split_sizes",
    "no_validation_cause",
    "split_clips",
    "warn_untrained_classes",
]

log = logging.getLogger(__name__)


def check_fold(fold: int, val_fold: int | None, num_folds: int, name: str) -> None:
    """Raise :class:`ConfigError` when ``fold``/``val_fold`` are not fold ids 1..``num_folds`` of dataset ``name``."""
    for key, value in (("fold", fold), ("val_fold", val_fold)):
        if value is not None and not 1 <= value <= num_folds:
            raise ConfigError(f"data.{key}={value} is not a fold of {name}: choose 1..{num_folds}")
    if val_fold is not None and val_fold == fold:
        raise ConfigError(f"data.val_fold={val_fold} equals data.fold: pick another fold or null")


def check_clips(clips: Sequence[Clip], num_classes: int, num_folds: int, name: str, root: Path | None) -> None:
    """:class:`DataError` for labels or folds out of range and for files listed twice, naming them."""
    if not clips:
        raise DataError(f"{name} found no clips under {root}")
    for c in clips:
        for label in c.labels if c.labels is not None else (c.label,):
            if not 0 <= label < num_classes:
                raise DataError(f"{c.path}: label {label} outside 0..{num_classes - 1} of {name}")
        if c.fold is not None and not 1 <= c.fold <= num_folds:
            raise DataError(f"{c.path}: fold {c.fold} outside 1..{num_folds} of {name}; fix the metadata")
    seen: dict[str, Path] = {}
    dups = []
    for c in clips:
        key = str(Path(c.path).resolve())
        if key in seen:
            dups.append(str(c.path))
        seen[key] = c.path
    if dups:
        raise DataError(f"{name}: {len(dups)} files listed twice in the metadata, e.g. {dups[:3]}")


def split_clips(
    clips: Sequence[Clip],
    fold: int,
    val_fold: int | None,
    val_fraction: float,
    seed: int,
    *,
    name: str,
    root: Path | None,
    class_names: Sequence[str],
    warn: bool = True,
) -> dict[str, list[int]]:
    """Indices of ``clips`` per split (``train``, ``val``, ``test``); ``warn``: log the classes validation lacks."""
    test = [i for i, c in enumerate(clips) if c.fold == fold]
    rest = [i for i, c in enumerate(clips) if c.fold != fold]
    if val_fold is not None:
        val = [i for i in rest if clips[i].fold == val_fold]
    else:
        val = grouped_val_split(clips, rest, val_fraction, seed)
    if not test:
        raise DataError(f"fold {fold} of {name} has no files under {root}")
    if val_fold is not None and not val:
        raise DataError(f"val_fold {val_fold} of {name} has no files under {root}")
    if val_fold is None and val and warn:
        left = sorted({clips[i].label for i in rest} - {clips[i].label for i in val})
        if left:
            names = ", ".join(class_names[y] for y in left[:10]) + (" ..." if len(left) > 10 else "")
            log.warning(
                "data.val_fraction=%s: %d classes have a single source recording in the training folds, kept "
                "for training, so validation has no clip of them: %s",
                val_fraction, len(left), names,
            )  # fmt: skip
    in_val = set(val)
    return {"train": [i for i in rest if i not in in_val], "val": sorted(val), "test": test}


def warn_untrained_classes(
    clips: Sequence[Clip], splits: dict[str, list[int]], class_names: Sequence[str], *, fold: int
) -> list[int]:
    """Log one warning naming the classes that have clips but none in the training split (e.g. every clip of a
    rare class in the test fold, or left out as bad files): the model cannot learn them, their class weight is 0
    and their F1 is 0. Returns their indices."""

    def labels(idx: list[int]) -> set[int]:
        return {y for i in idx for y in (clips[i].labels if clips[i].labels is not None else (clips[i].label,))}

    trained = labels(splits.get("train", []))
    where = {name: labels(idx) for name, idx in splits.items() if name != "train"}
    missing = sorted(set().union(*where.values()) - trained)
    if missing:
        names = ", ".join(
            f"{class_names[y]} ({'/'.join(n for n, ys in where.items() if y in ys)})" for y in missing[:10]
        ) + (" ..." if len(missing) > 10 else "")
        log.warning(
            "data.fold=%s: %d class(es) have no training clip, only clips in validation/test, so the model cannot "
            "learn them (class weight 0, F1 0): %s; move some of their clips to another fold, or drop the class",
            fold, len(missing), names,
        )  # fmt: skip
    return missing


def check_split_sizes(
    sizes: dict[str, int], *, name: str, fold: int, val_fold: int | None, val_fraction: float, world: int
) -> None:
    """:class:`ConfigError` for an empty training split, or an evaluated split smaller than the process count.

    Each process (DDP) evaluates its own share of the validation and test clips, without repeats, and
    Lightning needs every process to run at least one batch (a process without one skips the loop and the
    others wait for it in the metrics' all-reduce), so such a split needs at least ``world`` clips.
    """
    if sizes["train"] == 0:
        if val_fold is None and val_fraction > 0 and sizes["val"]:
            fix = f"data.val_fraction={val_fraction} moved all {sizes['val']} clips to validation: lower it"
        else:
            fix = "check data.fold, data.val_fold and the files left out"
        raise ConfigError(f"{name} fold {fold} has no training clips: {fix}")
    for split in ("val", "test"):
        if 0 < sizes[split] < world:
            raise ConfigError(
                f"the {split} split of {name} fold {fold} has {sizes[split]} clips, fewer than the {world} "
                f"processes (trainer.world_size): every process must evaluate at least one; use at most "
                f"{sizes[split]} devices or a larger {split} split"
            )


def no_validation_cause(val_fold: int | None, val_fraction: float) -> str:
    """Why a split came out without validation clips, in the words of the settings."""
    if val_fold is not None:
        return f"data.val_fold={val_fold} has no clip left"
    if val_fraction > 0:
        return f"data.val_fraction={val_fraction} found no class with two source recordings to split"
    return "data.val_fraction=0"
