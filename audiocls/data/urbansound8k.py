"""UrbanSound8K: 8732 urban sound excerpts of at most 4 s, 10 classes, 10 official folds.

Official layout: ``audio/fold1..fold10/<slice_file_name>`` and ``metadata/UrbanSound8K.csv`` with the
columns ``slice_file_name,fsID,start,end,salience,fold,classID,class``. The release mixes sample rates
(8-192 kHz), channel counts and bit depths; every clip is decoded, downmixed and resampled once, into the
cache. Clips shorter than 4 s are zero-padded (not looped, unlike some published code).
"""

from __future__ import annotations

from pathlib import Path

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, read_metadata_csv

__all__ = ["UrbanSound8KDataModule", "read_urbansound8k_meta", "CLASSES"]

CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
NUM_FOLDS = 10
SAMPLE_RATE = 22050  # the paper's rate
CLIP_SECONDS = 4.0
META_FILE = "metadata/UrbanSound8K.csv"
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
URL = "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz"
CHECKSUM = "md5:9aa69802bbf37fb986f71ec1483a196e"
ARCHIVE_DIR = "UrbanSound8K"


def read_urbansound8k_meta(root: Path) -> list[dict[str, str]]:
    """Rows of ``root/metadata/UrbanSound8K.csv``; :class:`DataError` naming the layout and the fix."""
    return read_metadata_csv(
        root / META_FILE,
        COLUMNS,
        ("fold", "classID"),
        f"no {META_FILE} under {root}; expected the layout of the official UrbanSound8K release "
        f"(audio/fold1..fold10/, {META_FILE}); run 'audiocls data download urbansound8k --root {root.parent}'",
    )


class UrbanSound8KDataModule(AudioDataModule):
    """UrbanSound8K with its 10 official folds (``fold`` held out; validation carved or ``val_fold``).

    Validation carved from the training folds keeps the slices of one ``fsID`` (one Freesound recording)
    together: slices of one recording on both sides make validation accuracy meaningless.

    Args:
        root: the release folder holding ``audio/`` and ``metadata/``.
        sample_rate: rate the clips are resampled to (paper: 22050 Hz).
        clip_seconds: clip length; shorter clips are zero-padded (paper: 4 s).
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule` (fold, val_fold, frontend, ...).
    """

    num_folds = NUM_FOLDS
    class_names = list(CLASSES)

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        **kwargs,
    ):
        super().__init__(root, sample_rate=sample_rate, clip_seconds=clip_seconds, **kwargs)
        self.require_root(
            "audio/fold1..fold10/ and metadata/UrbanSound8K.csv", download="urbansound8k", archive_dir=ARCHIVE_DIR
        )
        self.check_fold()
        self._rows = read_urbansound8k_meta(self.root)

    def list_clips(self) -> list[Clip]:
        return [
            Clip(
                self.root / "audio" / f"fold{int(r['fold'])}" / r["slice_file_name"],
                int(r["classID"]),
                int(r["fold"]),
                r["fsID"].strip(),  # slices of one Freesound recording stay on one side of train/val
            )
            for r in self._rows
        ]


#: ``audiocls data download|verify urbansound8k``: the name, and the datamodule that reads the unpacked release
DOWNLOAD = ("urbansound8k", UrbanSound8KDataModule)
