"""ESC-50 (and its ESC-10 subset): 2000 environmental clips of 5 s, 50 classes, 5 official folds.

Official layout: ``audio/<fold>-<src_file>-<take>-<target>.wav`` and ``meta/esc50.csv`` with the columns
``filename,fold,target,category,esc10,src_file,take``. The 2015 release shipped OGG files; whatever the CSV
names is loaded.
"""

from __future__ import annotations

from pathlib import Path

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, read_metadata_csv
from audiocls.errors import DataError

__all__ = ["ESC50DataModule", "read_esc50_meta"]

NUM_CLASSES = 50
NUM_CLASSES_ESC10 = 10
NUM_FOLDS = 5
SAMPLE_RATE = 44100  # the paper's rate
CLIP_SECONDS = 5.0
META_FILE = "meta/esc50.csv"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
#: GitHub builds branch archives on demand; this is the archive of the (unchanged since 2018) master branch
CHECKSUM = "sha256:805afc618aff80eff0641d51311647871fead5807da68bb18e43a27db47a79ce"
ARCHIVE_DIR = "ESC-50-master"  # folder the archive extracts to: pass it as data.root


def read_esc50_meta(root: Path) -> list[dict[str, str]]:
    """Rows of ``root/meta/esc50.csv``; :class:`DataError` naming the file and the fix when it is absent."""
    return read_metadata_csv(
        root / META_FILE,
        COLUMNS,
        ("fold", "target"),
        f"no {META_FILE} under {root}; expected the layout of the official ESC-50 release "
        f"(audio/, meta/esc50.csv); run 'audiocls data download esc50 --root {root.parent}'",
    )


class ESC50DataModule(AudioDataModule):
    """ESC-50 with its official folds; ``esc10=True`` selects the ESC-10 subset (targets mapped to 0..9).

    Args:
        root: the release folder holding ``audio/`` and ``meta/esc50.csv``.
        esc10: keep only the clips whose ``esc10`` column is True.
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule` (fold, sample_rate, frontend, ...).
    """

    num_folds = NUM_FOLDS

    def __init__(self, root: str | Path | None = None, *, esc10: bool = False, **kwargs):
        kwargs.setdefault("sample_rate", SAMPLE_RATE)
        kwargs.setdefault("clip_seconds", CLIP_SECONDS)
        super().__init__(root, **kwargs)
        self.require_root("audio/ and meta/esc50.csv")
        self.esc10 = esc10
        self.check_fold()
        self._rows = [r for r in read_esc50_meta(self.root) if not esc10 or r["esc10"].strip().lower() == "true"]
        if not self._rows:
            raise DataError(f"{self.root / META_FILE} has no row with esc10=True")
        bad = [r["target"] for r in self._rows if not 0 <= int(r["target"]) < NUM_CLASSES]
        if bad:
            raise DataError(f"{self.root / META_FILE}: target {bad[0]} outside 0..{NUM_CLASSES - 1}")
        targets = sorted({int(r["target"]) for r in self._rows})
        self._label = {t: i for i, t in enumerate(targets)}
        names = {int(r["target"]): r["category"] for r in self._rows}
        self.class_names = [names[t] for t in targets]

    def list_clips(self) -> list[Clip]:
        return [
            Clip(self.root / "audio" / r["filename"], self._label[int(r["target"])], int(r["fold"])) for r in self._rows
        ]
