"""GTZAN genre collection: 1000 music tracks of 30 s, 10 genres, no official folds.

Layouts: ``genres_original/<genre>/<genre>.000NN.wav`` (the common WAV re-release), ``genres/<genre>/
<genre>.000NN.au`` (the original tarball), or ``root`` itself holding the genre folders. Tracks are matched
by their stem (``jazz.00054``), so both formats load the same way.

The default split is 10 seeded, class-stratified folds computed from the file names, so it does not depend
on the order the file system lists them in (the paper's code took whatever ``os.listdir`` gave). A
``split_file`` replaces it with a fixed train/val/test list, e.g. the fault-filtered split of Kereliuk,
Sturm and Larsen (2015). Known-unreadable tracks are left out by name.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, stratified_folds
from audiocls.errors import ConfigError, DataError

__all__ = ["GTZANDataModule", "read_split_file", "GENRES"]

log = logging.getLogger(__name__)

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
NUM_FOLDS = 10
SAMPLE_RATE = 22050  # the paper's rate
CLIP_SECONDS = 30.0
AUDIO_DIRS = ("genres_original", "genres", ".")
EXTENSIONS = (".wav", ".au")
#: tracks left out by stem: jazz.00054.wav of the WAV re-release does not decode
KNOWN_BAD = ("jazz.00054",)
URL = "https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz"  # mirror of opihi.cs.uvic.ca
CHECKSUM = "md5:5b3d6dddb579ab49814ab86dba69e7c7"
ARCHIVE_DIR = "."  # the tarball holds genres/<genre>/*.au: pass the download root as data.root
SPLITS = ("train", "val", "test")


def find_audio_dir(root: Path) -> Path:
    """The folder holding the genre folders; :class:`DataError` naming the layouts and the fix."""
    for name in AUDIO_DIRS:
        if all((root / name / g).is_dir() for g in GENRES):
            return root / name
    raise DataError(
        f"no GTZAN genre folders under {root}; expected genres_original/<genre>/<genre>.000NN.wav or "
        f"genres/<genre>/<genre>.000NN.au for the genres {', '.join(GENRES)}; "
        f"run 'audiocls data download gtzan --root {root}'"
    )


def read_split_file(path: Path) -> dict[str, str]:
    """Track stem -> ``train``/``val``/``test``.

    Accepts a CSV with the header ``path,split`` or a folder holding one list per split (``train*.txt``,
    ``val*.txt`` (also ``valid*.txt``), ``test*.txt``, one ``genre/genre.000NN.wav`` per line, as the fault-filtered
    split is distributed).
    """
    path = Path(path).expanduser()
    out: dict[str, str] = {}
    if path.is_dir():
        for split in SPLITS:
            lists = sorted(path.glob(f"{split}*.txt"))
            if not lists:
                raise DataError(f"split folder {path} has no {split}*.txt list")
            for line in lists[0].read_text().split():
                out[_stem(line)] = split
    elif path.is_file():
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"path", "split"} <= set(rows[0]):
            raise DataError(f"split file {path} needs the header 'path,split' and at least one row")
        for n, r in enumerate(rows, start=2):
            if r["split"] not in SPLITS:
                raise DataError(f"{path} line {n}: split {r['split']!r} is not one of {SPLITS}")
            out[_stem(r["path"])] = r["split"]
    else:
        raise DataError(f"split file {path} does not exist")
    return out


def _stem(name: str) -> str:
    """``genre/genre.00012.wav`` -> ``genre.00012``."""
    base = Path(name.strip()).name
    return base[: -len(Path(base).suffix)] if Path(base).suffix in EXTENSIONS else base


class GTZANDataModule(AudioDataModule):
    """GTZAN with seeded stratified folds or a fixed split file.

    Args:
        root: the release folder (see the module docstring for the layouts).
        split_file: fixed train/val/test list (see :func:`read_split_file`); ``fold``/``val_fold`` are then
            ignored.
        fold_seed: seed of the 10 stratified folds.
        exclude: track stems left out (default: :data:`KNOWN_BAD`).
        sample_rate: rate tracks are resampled to (paper: 22050 Hz).
        clip_seconds: training crop length (paper: the whole 30 s track).
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule`; with ``clip_seconds`` shorter than the
            track, ``eval_seconds=30`` evaluates sliding windows with averaged logits.
    """

    num_folds = NUM_FOLDS
    class_names = list(GENRES)

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        split_file: str | Path | None = None,
        fold_seed: int = 0,
        exclude: list[str] | None = None,
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        **kwargs,
    ):
        super().__init__(root, sample_rate=sample_rate, clip_seconds=clip_seconds, **kwargs)
        self.require_root("genres_original/<genre>/ or genres/<genre>/", download="gtzan", archive_dir=ARCHIVE_DIR)
        if split_file is None:
            self.check_fold()
        self.fold_seed = fold_seed
        self.exclude = set(KNOWN_BAD if exclude is None else exclude)
        self.audio_dir = find_audio_dir(self.root)
        self.split_map = read_split_file(Path(split_file)) if split_file is not None else None

    def _tracks(self) -> list[tuple[str, Path, int]]:
        """(stem, path, label) of every track on disk, sorted by stem; excluded stems left out."""
        tracks, excluded, seen = [], [], {}
        for label, genre in enumerate(GENRES):
            for path in sorted((self.audio_dir / genre).iterdir()):
                if path.suffix.lower() not in EXTENSIONS or not path.name.startswith(f"{genre}."):
                    continue
                stem = _stem(path.name)
                if stem in self.exclude:
                    excluded.append(path.name)
                    continue
                if stem in seen:
                    raise DataError(f"GTZAN track {stem} is there twice: {seen[stem]} and {path}; keep one format")
                seen[stem] = path
                tracks.append((stem, path, label))
        if excluded:
            log.info("GTZAN: left out %d known-unreadable tracks: %s", len(excluded), ", ".join(excluded))
        return sorted(tracks)

    def list_clips(self) -> list[Clip]:
        tracks = self._tracks()
        if self.split_map is not None:
            missing = sorted(set(self.split_map) - {t[0] for t in tracks} - self.exclude)
            if missing:
                raise DataError(
                    f"{len(missing)} tracks of the split file are not under {self.audio_dir}: {missing[:5]}"
                )
            return [Clip(p, y) for s, p, y in tracks if s in self.split_map]
        folds = stratified_folds([t[0] for t in tracks], [t[2] for t in tracks], NUM_FOLDS, self.fold_seed)
        return [Clip(p, y, f) for (_, p, y), f in zip(tracks, folds, strict=True)]

    def split(self, clips) -> dict[str, list[int]]:
        if self.split_map is None:
            return super().split(clips)
        out = {name: [i for i, c in enumerate(clips) if self.split_map[_stem(c.path.name)] == name] for name in SPLITS}
        for name in ("train", "test"):
            if not out[name]:
                raise ConfigError(f"the split file gives no {name} tracks")
        return out


#: ``audiocls data download|verify gtzan``: the name, and the datamodule that reads the unpacked release
DOWNLOAD = ("gtzan", GTZANDataModule)
