"""Free Spoken Digit Dataset (FSDD): 3000 recordings of the digits 0-9, 6 speakers x 50 takes, 8 kHz.

Upstream layout: ``recordings/<digit>_<speaker>_<index>.wav``. The official split holds out takes 0-4 of
every speaker and digit as the test set (300 clips); ``split="speaker"`` holds out one speaker per fold
instead (speakers in alphabetical order), which measures generalisation to a new voice.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip
from audiocls.errors import ConfigError, DataError

__all__ = ["FSDDDataModule", "parse_name"]

log = logging.getLogger(__name__)

CLASSES = tuple(str(d) for d in range(10))
AUDIO_DIR = "recordings"
TEST_TAKES = range(0, 5)  # official split: takes 0-4 are the test set
SAMPLE_RATE = 8000
CLIP_SECONDS = 1.0  # 99 % of the recordings are shorter than 0.93 s
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
CHECKSUM = None  # a branch archive of a repository that still changes: no fixed checksum exists
ARCHIVE_DIR = "free-spoken-digit-dataset-master"
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``7_jackson_32.wav`` -> ``(7, "jackson", 32)``; ``None`` for other names."""
    m = NAME.match(name)
    return (int(m[1]), m[2], int(m[3])) if m else None


class FSDDDataModule(AudioDataModule):
    """FSDD with the official take split (``fold`` must be 1) or speaker-held-out folds.

    Under the speaker split, validation carved from the training speakers holds out whole speakers too, so it
    measures what the test fold does (a new voice); under the official split (same speakers in train and test)
    it is carved per recording.

    Args:
        root: the repository folder holding ``recordings/``.
        split: ``official`` (takes 0-4 = test) or ``speaker`` (fold k holds out the k-th speaker).
        sample_rate: rate in Hz (the recordings are 8 kHz).
        clip_seconds: clip length; shorter recordings are zero-padded.
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule`.
    """

    class_names = list(CLASSES)

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        split: Literal["official", "speaker"] = "official",
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        **kwargs,
    ):
        super().__init__(root, sample_rate=sample_rate, clip_seconds=clip_seconds, **kwargs)
        self.require_root("recordings/", download="fsdd", archive_dir=ARCHIVE_DIR)
        if split not in ("official", "speaker"):
            raise ConfigError(f"data.split={split!r}: choose 'official' or 'speaker'")
        self.split_mode = split
        audio = self.root / AUDIO_DIR
        if not audio.is_dir():
            raise DataError(
                f"no {AUDIO_DIR}/ under {self.root}; expected the upstream FSDD layout "
                f"recordings/<digit>_<speaker>_<index>.wav; run 'audiocls data download fsdd --root {self.root.parent}'"
            )
        self._files = []
        for path in sorted(audio.iterdir()):
            parsed = parse_name(path.name)
            if parsed is None:
                if path.suffix.lower() == ".wav":
                    log.warning("FSDD: ignoring %s (not <digit>_<speaker>_<index>.wav)", path)
                continue
            self._files.append((path, *parsed))
        if not self._files:
            raise DataError(f"no <digit>_<speaker>_<index>.wav files in {audio}")
        self.speakers = sorted({f[2] for f in self._files})
        self.num_folds = len(self.speakers) if split == "speaker" else 1
        self.check_fold()
        if split == "speaker":
            log.info("FSDD: fold %d holds out speaker %s", self.fold, self.speakers[self.fold - 1])

    def list_clips(self) -> list[Clip]:
        if self.split_mode == "speaker":
            fold_of = {s: k + 1 for k, s in enumerate(self.speakers)}
            return [Clip(p, d, fold_of[s], s) for p, d, s, _ in self._files]  # validation: whole speakers
        return [Clip(p, d, 1 if take in TEST_TAKES else None) for p, d, _, take in self._files]


#: ``audiocls data download|verify fsdd``: the name, and the datamodule that reads the unpacked release
DOWNLOAD = ("fsdd", FSDDDataModule)
