"""Users' own audio: one folder per class (:class:`FolderDataModule`) or a CSV manifest (:class:`CSVDataModule`).

Without folds in the data, clips are dealt into ``num_folds`` seeded, class-stratified folds computed from
their paths (independent of listing order); ``fold`` is held out as the test set as everywhere else.
"""

from __future__ import annotations

from pathlib import Path

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, stratified_folds
from audiocls.data.io import AUDIO_EXTENSIONS
from audiocls.data.manifest import read_manifest
from audiocls.errors import ConfigError, DataError

__all__ = ["FolderDataModule", "CSVDataModule", "AUDIO_EXTENSIONS"]


def _check_num_folds(num_folds: int) -> None:
    if num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds} must be at least 2 (one fold is held out as the test set)")


def _label_order(labels: set[str]) -> list[str]:
    """Integer labels in numeric order (``2`` before ``10``), any other set alphabetically.

    ``int`` decides what is an integer (not ``str.isdigit``, which accepts ``²`` that ``int`` refuses); two cells
    that are one number (``7`` and ``007``) stay two classes, ordered by their text, so the order never depends on
    the order of a set.
    """
    try:
        return sorted(labels, key=lambda v: (int(v), v))
    except ValueError:
        return sorted(labels)


class FolderDataModule(AudioDataModule):
    """``root/<class>/*.{wav,flac,ogg,mp3,...}``; class names are the folder names, sorted.

    Args:
        root: the folder holding one sub-folder per class.
        num_folds: stratified folds the clips are dealt into.
        fold_seed: seed of those folds.
        extensions: file endings to load (default :data:`AUDIO_EXTENSIONS`).
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule` (fold, sample_rate, clip_seconds, ...).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        num_folds: int = 5,
        fold_seed: int = 0,
        extensions: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        self.require_root("one sub-folder of audio files per class")
        _check_num_folds(num_folds)
        self.num_folds, self.fold_seed = num_folds, fold_seed
        self.check_fold()
        exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in (extensions or AUDIO_EXTENSIONS)}
        if not self.root.is_dir():
            raise DataError(f"data.root={self.root} is not a folder; expected root/<class>/<clip>.wav")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self._files: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            files = sorted(p for p in (self.root / name).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self._files += [(p, label) for p in files]
        if len(classes) < 2 or not self._files:
            raise DataError(
                f"{self.root} holds {len(classes)} class folders and {len(self._files)} audio files "
                f"({', '.join(sorted(exts))}); expected root/<class>/<clip> with at least two classes"
            )
        self.class_names = classes

    def list_clips(self) -> list[Clip]:
        keys = [str(p.relative_to(self.root)) for p, _ in self._files]
        folds = stratified_folds(keys, [y for _, y in self._files], self.num_folds, self.fold_seed)
        return [Clip(p, y, f) for (p, y), f in zip(self._files, folds, strict=True)]


class CSVDataModule(AudioDataModule):
    """A manifest ``path,label[,fold][,group]``: paths relative to the manifest's folder (or absolute).

    Labels are class names (sorted numerically when they are all integers, else alphabetically) unless
    ``class_names`` fixes the order. With a ``fold`` column its values (1..num_folds) are the folds;
    without, clips are dealt into ``num_folds`` stratified folds. An optional ``group`` column names the source
    recording of each clip; a validation carved from the training folds keeps each group on one side.

    A label cell may hold several labels separated by ``;`` (``dog;rain``): the manifest is then multi-label
    (``task: multilabel``, multi-hot targets; folds and validation are stratified by each clip's first label).

    Args:
        manifest: the CSV file.
        class_names: the classes in label order; ``None`` takes the sorted labels of the manifest.
        num_folds: stratified folds when the manifest has no ``fold`` column.
        fold_seed: seed of those folds.
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule`.
    """

    def __init__(
        self,
        manifest: str | Path,
        *,
        class_names: list[str] | None = None,
        num_folds: int = 5,
        fold_seed: int = 0,
        **kwargs,
    ):
        manifest = Path(manifest).expanduser()
        kwargs.pop("root", None)  # the manifest's folder is the root
        super().__init__(manifest.parent, **kwargs)
        if not manifest.is_file():
            raise DataError(
                f"data.manifest={manifest} does not exist; expected a CSV with the header path,label[,fold]"
            )
        rows = read_manifest(manifest)
        if not rows or not {"path", "label"} <= set(rows[0]):
            raise DataError(f"{manifest} needs the header path,label[,fold] and at least one row")
        cells = [[v.strip() for v in (r["label"] or "").split(";") if v.strip()] for r in rows]
        empty = [r["path"] for r, c in zip(rows, cells, strict=True) if not c]
        if empty:
            raise DataError(f"{manifest}: no label for {empty[:3]}; every row needs at least one label")
        if any(len(c) > 1 for c in cells):
            self.task = "multilabel"
        labels = [v for c in cells for v in c]
        if class_names is None:
            class_names = _label_order(set(labels))
        unknown = sorted(set(labels) - set(class_names))
        if unknown:
            raise DataError(f"{manifest}: labels {unknown[:5]} are not in data.class_names={class_names}")
        self.class_names = list(class_names)
        self.record_hparam("class_names", list(class_names))  # the list in force, as the model receives it
        index = {name: i for i, name in enumerate(self.class_names)}
        paths = [Path(r["path"].strip()) for r in rows]
        paths = [p if p.is_absolute() else manifest.parent / p for p in paths]
        self._multi = [tuple(dict.fromkeys(index[v] for v in c)) for c in cells]  # first label first, no repeats
        self._labels = [index[c[0]] for c in cells]
        self._paths = paths
        self._groups = [(r.get("group") or "").strip() or None for r in rows] if "group" in rows[0] else None
        if "fold" in rows[0]:
            try:
                self._folds = [int(r["fold"]) for r in rows]
            except (TypeError, ValueError) as err:
                raise DataError(f"{manifest}: the fold column must hold integers 1..N ({err})") from err
            num_folds = max(self._folds)
        else:
            self._folds = None
        _check_num_folds(num_folds)
        self.num_folds, self.fold_seed, self.manifest = num_folds, fold_seed, manifest
        self.check_fold()

    def list_clips(self) -> list[Clip]:
        folds = self._folds or stratified_folds(
            [str(p) for p in self._paths], self._labels, self.num_folds, self.fold_seed
        )
        groups = self._groups or [None] * len(self._paths)
        multi = self._multi if self.task == "multilabel" else [None] * len(self._paths)
        return [
            Clip(p, y, f, g, m) for p, y, f, g, m in zip(self._paths, self._labels, folds, groups, multi, strict=True)
        ]
