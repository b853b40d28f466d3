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

__all__ = ["ESC50DataModule", "read_esc50_meta", "ESC10_TARGETS"]

NUM_CLASSES = 50
#: the ESC-50 targets of the ten ESC-10 classes (dog, rooster, rain, sea waves, crackling fire, crying baby,
#: sneezing, clock tick, helicopter, chainsaw)
ESC10_TARGETS = (0, 1, 10, 11, 12, 20, 21, 38, 40, 41)
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

    Validation carved from the training folds (``val_fold: null``) keeps the clips of one ``src_file`` (one
    Freesound recording) together, as the official folds do.

    Args:
        root: the release folder holding ``audio/`` and ``meta/esc50.csv``.
        esc10: keep only the clips whose ``esc10`` column is True; their targets must be the ten ESC-10
            classes (:data:`ESC10_TARGETS`).
        sample_rate: rate the clips are resampled to (paper: 44100 Hz).
        clip_seconds: clip length (the release: 5 s; shorter clips are zero-padded).
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule` (fold, val_fold, frontend, ...).
    """

    num_folds = NUM_FOLDS

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        esc10: bool = False,
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        **kwargs,
    ):
        super().__init__(root, sample_rate=sample_rate, clip_seconds=clip_seconds, **kwargs)
        self.require_root("audio/ and meta/esc50.csv", download="esc50", archive_dir=ARCHIVE_DIR)
        self.esc10 = esc10
        self.check_fold()
        self._rows: list[dict[str, str]] | None = None
        self.class_names = self.read_class_names()

    def read_class_names(self) -> list[str]:
        """The classes in label order, from the metadata (a subclass that knows them may skip the file)."""
        return self._classes(self.rows())

    def rows(self) -> list[dict[str, str]]:
        """The metadata rows in use (the ESC-10 ones with ``esc10``), read once and checked."""
        if self._rows is None:
            meta = self.root / META_FILE
            rows = [r for r in read_esc50_meta(self.root) if not self.esc10 or r["esc10"].strip().lower() == "true"]
            if not rows:
                raise DataError(f"{meta} has no row with esc10=True")
            bad = [r for r in rows if not 0 <= int(r["target"]) < NUM_CLASSES]
            if bad:
                raise DataError(
                    f"{meta}: {bad[0]['filename']} has target {bad[0]['target']} outside 0..{NUM_CLASSES - 1}"
                )
            if self.esc10:
                bad = [r for r in rows if int(r["target"]) not in ESC10_TARGETS]
                if bad:
                    raise DataError(
                        f"{meta}: {len(bad)} rows marked esc10=True have a target outside the ten ESC-10 classes "
                        f"{list(ESC10_TARGETS)}, e.g. {bad[0]['filename']} (target {bad[0]['target']}); fix their "
                        "esc10 or target column, or set data.esc10=false to use every class"
                    )
            self._rows = rows
        return self._rows

    @staticmethod
    def _classes(rows: list[dict[str, str]]) -> list[str]:
        names = {int(r["target"]): r["category"] for r in rows}
        return [names[t] for t in sorted(names)]

    def list_clips(self) -> list[Clip]:
        rows = self.rows()
        label = {t: i for i, t in enumerate(sorted({int(r["target"]) for r in rows}))}
        return [
            Clip(self.root / "audio" / r["filename"], label[int(r["target"])], int(r["fold"]), r["src_file"].strip())
            for r in rows
        ]


#: ``audiocls data download|verify esc50``: the name, and the datamodule that reads the unpacked release
DOWNLOAD = ("esc50", ESC50DataModule)
