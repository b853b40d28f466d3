"""FSD50K: 51,197 Freesound clips (0.3-30 s, 44.1 kHz) tagged with 200 AudioSet classes, several per clip.

Official layout (the Zenodo release, unzipped): ``FSD50K.ground_truth/dev.csv`` (``fname,labels,mids,split``:
``labels`` comma-separated class names, ``split`` ``train``/``val``), ``FSD50K.ground_truth/eval.csv``
(``fname,labels,mids``), ``FSD50K.ground_truth/vocabulary.csv`` (``index,label,mid``, no header) and the audio in
``FSD50K.dev_audio/<fname>.wav`` and ``FSD50K.eval_audio/<fname>.wav``. The splits are the official ones: dev
``train`` for training, dev ``val`` for validation, eval for the test; the task is ``multilabel``. That is one
split, so the dataset has one fold (``audiocls cv`` runs it once).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, read_metadata_csv
from audiocls.errors import ConfigError, DataError

__all__ = ["FSD50KDataModule"]

GROUND_TRUTH = "FSD50K.ground_truth"
DEV_CSV, EVAL_CSV, VOCABULARY_CSV = "dev.csv", "eval.csv", "vocabulary.csv"
DEV_AUDIO, EVAL_AUDIO = "FSD50K.dev_audio", "FSD50K.eval_audio"
DEV_COLUMNS, EVAL_COLUMNS = ("fname", "labels", "mids", "split"), ("fname", "labels", "mids")
SAMPLE_RATE = 44100
#: the one fold: the eval set, held out; the dev clips carry no fold, their ``split`` column says train or val
TEST_FOLD = 1


def _labels(cell: str) -> list[str]:
    return [v.strip() for v in (cell or "").split(",") if v.strip()]


class FSD50KDataModule(AudioDataModule):
    """FSD50K with its official train/val/eval splits; multi-hot targets over the vocabulary's classes.

    Args:
        root: the folder holding ``FSD50K.ground_truth/``, ``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/``.
        sample_rate: rate the clips are resampled to (the release: 44100 Hz).
        clip_seconds: training crop length (clips are 0.3-30 s; shorter ones are zero-padded); evaluate
            longer clips whole with ``data.eval_seconds`` (windows whose logits are averaged).
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule`; ``fold`` is 1 (the one official split) and
            ``val_fold`` null: validation is the dev ``val`` split (``val_fraction`` is not used).
    """

    num_folds = 1
    task = "multilabel"

    def __init__(
        self, root: str | Path | None = None, *, sample_rate: int = SAMPLE_RATE, clip_seconds: float = 10.0, **kwargs
    ):
        super().__init__(root, sample_rate=sample_rate, clip_seconds=clip_seconds, **kwargs)
        self.check_fold()
        if self.val_fold is not None:
            raise ConfigError(
                f"data.val_fold={self.val_fold}: FSD50K validates on its official dev 'val' split; set it to null"
            )
        root = self.require_root(f"{GROUND_TRUTH}/, {DEV_AUDIO}/ and {EVAL_AUDIO}/")
        gt = root / GROUND_TRUTH
        hint = f"expected the layout of the FSD50K release ({GROUND_TRUTH}/{DEV_CSV}, {EVAL_CSV}, audio folders)"
        self._dev = read_metadata_csv(
            gt / DEV_CSV, DEV_COLUMNS, (), f"no {GROUND_TRUTH}/{DEV_CSV} under {root}; {hint}"
        )
        self._eval = read_metadata_csv(
            gt / EVAL_CSV, EVAL_COLUMNS, (), f"no {GROUND_TRUTH}/{EVAL_CSV} under {root}; {hint}"
        )
        bad = sorted({r["split"] for r in self._dev} - {"train", "val"})
        if bad:
            raise DataError(f"{gt / DEV_CSV}: split values {bad} are not train/val")
        self.class_names = self._read_classes(gt)
        self.record_hparam("class_names", list(self.class_names))

    def _read_classes(self, gt: Path) -> list[str]:
        """The vocabulary's order (``vocabulary.csv``: ``index,label,mid``), else the labels of the CSVs, sorted."""
        vocab = gt / VOCABULARY_CSV
        if vocab.is_file():
            with vocab.open(newline="") as fh:
                rows = [r for r in csv.reader(fh) if len(r) >= 2 and r[0].strip().isdigit()]
            return [r[1].strip() for r in sorted(rows, key=lambda r: int(r[0]))]
        return sorted({v for r in self._dev + self._eval for v in _labels(r["labels"])})

    def list_clips(self) -> list[Clip]:
        index = {name: i for i, name in enumerate(self.class_names)}
        clips = []
        for rows, audio, csv_name in ((self._dev, DEV_AUDIO, DEV_CSV), (self._eval, EVAL_AUDIO, EVAL_CSV)):
            for n, r in enumerate(rows, start=2):
                names = _labels(r["labels"])
                unknown = [v for v in names if v not in index]
                if not names or unknown:
                    raise DataError(
                        f"{self.root / GROUND_TRUTH / csv_name} line {n}: labels {r['labels']!r} "
                        + (f"hold {unknown[:3]}, not in the vocabulary" if unknown else "are empty")
                    )
                labels = tuple(dict.fromkeys(index[v] for v in names))
                path = self.root / audio / f"{r['fname'].strip()}.wav"
                if audio == EVAL_AUDIO:
                    clips.append(Clip(path, labels[0], TEST_FOLD, labels=labels))
                else:
                    clips.append(Clip(path, labels[0], None, labels=labels))
        return clips

    def split(self, clips: Sequence[Clip]) -> dict[str, list[int]]:
        """The official split: ``test`` the eval set, ``val`` the dev ``val`` clips, ``train`` the dev ``train`` ones."""
        val = {self.root / DEV_AUDIO / f"{r['fname'].strip()}.wav" for r in self._dev if r["split"] == "val"}
        parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for i, c in enumerate(clips):
            parts["test" if c.fold == TEST_FOLD else "val" if c.path in val else "train"].append(i)
        if not parts["test"]:
            raise DataError(f"no clip of {self.root / GROUND_TRUTH / EVAL_CSV} under {self.root / EVAL_AUDIO}")
        return parts
