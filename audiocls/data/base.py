"""The shared data side: :class:`ClipDataset` over decoded audio and :class:`AudioDataModule`.

A dataset module subclasses :class:`AudioDataModule`, sets ``class_names`` and ``num_folds`` in its
``__init__`` and implements :meth:`AudioDataModule.list_clips`. The base class owns the split (held-out
fold, validation carved from the training folds), the decoded-audio cache, the loaders and the device hook
that turns waveforms into spectrograms.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiocls.augment import AugmentConfig, SpecAugment, WaveAugment
from audiocls.data.io import DecodedCache, pad_or_crop
from audiocls.errors import ConfigError
from audiocls.features import FrontendConfig, build_frontend, check_frontend

__all__ = ["Clip", "ClipDataset", "AudioDataModule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One labelled audio file.

    Args:
        path: the audio file.
        label: class index in ``0..num_classes-1``.
        fold: official fold id (1-based), when the dataset has folds.
    """

    path: Path
    label: int
    fold: int | None = None


class ClipDataset(Dataset):
    """Fixed-length waveforms of some clips of a :class:`DecodedCache`.

    Args:
        cache: the decoded audio of the whole dataset.
        indices: which entries of ``cache`` belong to this split.
        labels: the class index of each entry of ``indices``.
        clip_samples: output length; longer clips are cropped, shorter ones zero-padded at the end.
        train: random crop when True, centre crop otherwise.
    """

    def __init__(
        self,
        cache: DecodedCache,
        indices: Sequence[int],
        labels: Sequence[int],
        clip_samples: int,
        train: bool,
    ):
        self.cache, self.indices, self.labels = cache, list(indices), list(labels)
        self.clip_samples, self.train = clip_samples, train

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(wave (clip_samples,) float32, label)."""
        wave = self.cache[self.indices[i]]
        offset = None
        if self.train and len(wave) > self.clip_samples:
            offset = int(torch.randint(0, len(wave) - self.clip_samples + 1, ()).item())
        return torch.from_numpy(np.array(pad_or_crop(wave, self.clip_samples, offset=offset))), self.labels[i]


def _plain(value):
    """Dataclasses as dicts, so checkpoints load with ``weights_only=True``."""
    return asdict(value) if is_dataclass(value) else value


class AudioDataModule(L.LightningDataModule):
    """Base of every dataset: split, cache, loaders, and waveform -> spectrogram on the device.

    Args:
        root: the dataset folder.
        fold: held-out test fold (1-based).
        val_fold: a training fold used whole for validation; ``None`` carves ``val_fraction`` of every class
            of the training folds instead (seeded, stratified).
        val_fraction: share of each class moved from training to validation when ``val_fold`` is None.
        sample_rate: rate in Hz the audio is resampled to once, in the cache.
        clip_seconds: length of every training and evaluation clip.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        frontend: the spectrogram frontend (see :class:`~audiocls.features.FrontendConfig`).
        augment: training-time augmentation (see :class:`~audiocls.augment.AugmentConfig`).
        cache_dir: where decoded audio is cached; ``None`` is ``$AUDIOCLS_CACHE`` or ``~/.cache/audiocls``.
        seed: seed of the validation split.
    """

    num_folds: int = 1
    class_names: list[str]

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        fold: int = 1,
        val_fold: int | None = None,
        val_fraction: float = 0.1,
        sample_rate: int = 44100,
        clip_seconds: float = 5.0,
        batch_size: int = 32,
        num_workers: int = 2,
        frontend: FrontendConfig = FrontendConfig(),
        augment: AugmentConfig = AugmentConfig(),
        cache_dir: str | Path | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = _plain(value)
        self.root = Path(root).expanduser() if root is not None else None
        self.fold, self.val_fold, self.val_fraction = fold, val_fold, val_fraction
        self.sample_rate, self.clip_samples = int(sample_rate), round(clip_seconds * sample_rate)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache_dir, self.seed = cache_dir, seed
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction={val_fraction} must lie in [0, 1)")
        check_frontend(frontend, self.sample_rate, self.clip_samples)
        self.frontend = build_frontend(frontend, self.sample_rate)
        self.wave_augment, self.spec_augment = WaveAugment(augment), SpecAugment(augment)
        self.splits: dict[str, ClipDataset] = {}

    # --- what a dataset module provides -------------------------------------------------------------------
    def list_clips(self) -> list[Clip]:
        """Every clip of the dataset, in a fixed order."""
        raise NotImplementedError

    def check_fold(self) -> None:
        """Raise :class:`ConfigError` when ``fold``/``val_fold`` are not fold ids of this dataset."""
        name = type(self).__name__
        for key, value in (("fold", self.fold), ("val_fold", self.val_fold)):
            if value is not None and not 1 <= value <= self.num_folds:
                raise ConfigError(f"data.{key}={value} is not a fold of {name}: choose 1..{self.num_folds}")
        if self.val_fold is not None and self.val_fold == self.fold:
            raise ConfigError(f"data.val_fold={self.val_fold} equals data.fold: pick another fold or null")

    # --- linked to the model ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return self.frontend.out_channels

    # --- split and cache ----------------------------------------------------------------------------------
    def split(self, clips: Sequence[Clip]) -> dict[str, list[int]]:
        """Indices of ``clips`` per split: ``test`` = the held-out fold, ``val`` = see the class docstring."""
        test = [i for i, c in enumerate(clips) if c.fold == self.fold]
        rest = [i for i, c in enumerate(clips) if c.fold != self.fold]
        if self.val_fold is not None:
            val = [i for i in rest if clips[i].fold == self.val_fold]
        else:
            rng = np.random.default_rng(self.seed)
            val = []
            for label in sorted({clips[i].label for i in rest}):
                members = [i for i in rest if clips[i].label == label]
                take = round(len(members) * self.val_fraction)
                val += sorted(rng.permutation(members)[:take].tolist())
        in_val = set(val)
        return {"train": [i for i in rest if i not in in_val], "val": sorted(val), "test": test}

    def _cache(self, clips: Sequence[Clip]) -> DecodedCache:
        return DecodedCache([c.path for c in clips], self.sample_rate, self.cache_dir)

    def prepare_data(self) -> None:
        self._cache(self.list_clips()).build()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        clips = self.list_clips()
        cache = self._cache(clips)
        for name, idx in self.split(clips).items():
            self.splits[name] = ClipDataset(
                cache, idx, [clips[i].label for i in idx], self.clip_samples, train=name == "train"
            )
        sizes = {k: len(v) for k, v in self.splits.items()}
        log.info("%s fold %s: %s clips", type(self).__name__, self.fold, sizes)
        if 0 < sizes["train"] < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the training set ({sizes['train']} clips) "
                f"and the last partial batch is dropped; lower data.batch_size to at most {sizes['train']}"
            )

    # --- loaders -----------------------------------------------------------------------------------------
    def _loader(self, name: str) -> DataLoader:
        train = name == "train"
        return DataLoader(
            self.splits[name],
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    # --- on the device -----------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """(wave (B, T), y) -> (spec (B, C, n_mels, frames), y); augmentation in training only."""
        wave, *rest = batch if isinstance(batch, list | tuple) else (batch,)
        training = self.trainer is not None and self.trainer.training
        self.frontend.to(wave.device)
        if training:
            wave = self.wave_augment(wave)
        spec = self.frontend(wave)
        if training:
            spec = self.spec_augment(spec)
        return (spec, *rest) if rest else spec
