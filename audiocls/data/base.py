"""The shared data side: :class:`ClipDataset` over decoded audio and :class:`AudioDataModule`.

A dataset module subclasses :class:`AudioDataModule`, sets ``class_names`` and ``num_folds`` in its
``__init__`` and implements :meth:`AudioDataModule.list_clips`. The base class owns the checks on the clip
list (labels, folds, duplicates), the split (held-out fold, validation carved from the training folds), the
decoded-audio cache and the bad-file policy, the loaders and the device hook that turns waveforms into
spectrograms (with sliding windows over long evaluation clips).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from audiocls.audio.augment import AugmentConfig, SpecAugment, WaveAugment
from audiocls.audio.frontend import FrontendConfig, build_frontend, check_frontend
from audiocls.data.cache import DecodedCache
from audiocls.data.clips import Clip, ClipDataset
from audiocls.errors import AudioLoadError, ConfigError, DataError

__all__ = ["AudioDataModule", "compute_stats"]

log = logging.getLogger(__name__)


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
        eval_seconds: length evaluated per clip in validation/test/predict; longer than ``clip_seconds`` turns
            every evaluation clip into ``W`` windows of ``clip_seconds`` (padded or centre-cropped to this length
            first) whose logits the model averages; ``None`` evaluates one centre crop of ``clip_seconds``.
        eval_hop_seconds: hop between evaluation windows; ``None`` is ``clip_seconds`` (no overlap).
        skip_bad_files: clips that cannot be decoded (corrupt, empty, NaN/Inf, missing) are left out with a
            warning naming them and a count; ``False`` stops before the first step with one error listing them.
        frontend: the spectrogram frontend (see :class:`~audiocls.audio.frontend.FrontendConfig`).
        augment: training-time augmentation (see :class:`~audiocls.audio.augment.AugmentConfig`).
        cache_dir: where decoded audio is cached; ``None`` is ``$AUDIOCLS_CACHE`` or ``~/.cache/audiocls``.
        seed: seed of the validation split.
    """

    num_folds: int = 1
    class_names: list[str]
    #: when True, ``val_dataloader`` returns ``[val, test]``: the held-out fold is evaluated after every validation
    #: epoch as dataloader 1 (set by :class:`audiocls.commands.cv.TestFoldEachEpoch`, not a user setting)
    validate_test_fold: bool = False

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
        eval_seconds: float | None = None,
        eval_hop_seconds: float | None = None,
        skip_bad_files: bool = False,
        frontend: FrontendConfig = FrontendConfig(),
        augment: AugmentConfig = AugmentConfig(),
        cache_dir: str | Path | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = _plain(value)
        # the values in force (a subclass may have derived them), so a checkpoint rebuilds the same input
        self.hparams["sample_rate"], self.hparams["clip_seconds"] = sample_rate, clip_seconds
        self.root = Path(root).expanduser() if root is not None else None
        self.fold, self.val_fold, self.val_fraction = fold, val_fold, val_fraction
        self.sample_rate, self.clip_samples = int(sample_rate), round(clip_seconds * sample_rate)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache_dir, self.seed = cache_dir, seed
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction={val_fraction} must lie in [0, 1)")
        if clip_seconds <= 0:
            raise ConfigError(f"data.clip_seconds={clip_seconds} must be positive")
        self.skip_bad_files = skip_bad_files
        self.eval_windows: tuple[int, int] | None = None
        if eval_seconds is not None and round(eval_seconds * sample_rate) > self.clip_samples:
            hop = round((eval_hop_seconds or clip_seconds) * sample_rate)
            if hop < 1:
                raise ConfigError(f"data.eval_hop_seconds={eval_hop_seconds} must be positive")
            self.eval_windows = (round(eval_seconds * sample_rate), hop)
        elif eval_seconds is not None and eval_seconds < clip_seconds:
            raise ConfigError(
                f"data.eval_seconds={eval_seconds} is shorter than data.clip_seconds={clip_seconds}: "
                "set it to null or at least clip_seconds"
            )
        check_frontend(frontend, self.sample_rate, self.clip_samples)
        self.frontend = build_frontend(frontend, self.sample_rate)
        self.wave_augment, self.spec_augment = WaveAugment(augment), SpecAugment(augment)
        self.splits: dict[str, ClipDataset] = {}

    # --- what a dataset module provides -------------------------------------------------------------------
    def list_clips(self) -> list[Clip]:
        """Every clip of the dataset, in a fixed order."""
        raise NotImplementedError

    def require_root(self, layout: str) -> Path:
        """``self.root``; :class:`ConfigError` saying what to pass when it is unset."""
        if self.root is None:
            raise ConfigError(f"data.root is not set: pass --data.root DIR, the folder holding {layout}")
        return self.root

    def check_fold(self) -> None:
        """Raise :class:`ConfigError` when ``fold``/``val_fold`` are not fold ids of this dataset."""
        name = type(self).__name__
        for key, value in (("fold", self.fold), ("val_fold", self.val_fold)):
            if value is not None and not 1 <= value <= self.num_folds:
                raise ConfigError(f"data.{key}={value} is not a fold of {name}: choose 1..{self.num_folds}")
        if self.val_fold is not None and self.val_fold == self.fold:
            raise ConfigError(f"data.val_fold={self.val_fold} equals data.fold: pick another fold or null")

    def check_clips(self, clips: Sequence[Clip]) -> None:
        """:class:`DataError` for labels or folds out of range and for files listed twice, naming them."""
        name = type(self).__name__
        if not clips:
            raise DataError(f"{name} found no clips under {self.root}")
        for c in clips:
            if not 0 <= c.label < self.num_classes:
                raise DataError(f"{c.path}: label {c.label} outside 0..{self.num_classes - 1} of {name}")
            if c.fold is not None and not 1 <= c.fold <= self.num_folds:
                raise DataError(f"{c.path}: fold {c.fold} outside 1..{self.num_folds} of {name}; fix the metadata")
        seen: dict[str, Path] = {}
        dups = []
        for c in clips:
            key = str(Path(c.path).resolve())
            if key in seen:
                dups.append(str(c.path))
            seen[key] = c.path
        if dups:
            raise DataError(f"{name}: {len(dups)} files listed twice in the metadata, e.g. {dups[:3]}")

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
        if not test:
            raise DataError(f"fold {self.fold} of {type(self).__name__} has no files under {self.root}")
        if self.val_fold is not None and not val:
            raise DataError(f"val_fold {self.val_fold} of {type(self).__name__} has no files under {self.root}")
        in_val = set(val)
        return {"train": [i for i in rest if i not in in_val], "val": sorted(val), "test": test}

    def _cache(self, clips: Sequence[Clip]) -> DecodedCache:
        return DecodedCache([c.path for c in clips], self.sample_rate, self.cache_dir)

    def prepare_data(self) -> None:
        clips = self.list_clips()
        self.check_clips(clips)
        self._cache(clips).build()

    def apply_bad_file_policy(self, clips: Sequence[Clip], cache: DecodedCache) -> set[int]:
        """Indices of clips to leave out; raises :class:`AudioLoadError` listing them unless ``skip_bad_files``."""
        bad = cache.bad
        if not bad:
            return set()
        lines = [bad[i] for i in sorted(bad)]
        shown = "; ".join(lines[:5]) + (f"; ... and {len(lines) - 5} more" if len(lines) > 5 else "")
        if not self.skip_bad_files:
            raise AudioLoadError(
                f"{len(bad)} of {len(clips)} audio files cannot be decoded: {shown}. "
                "Fix or delete them, or set data.skip_bad_files=true to leave them out"
            )
        log.warning("skipping %d of %d audio files that cannot be decoded: %s", len(bad), len(clips), shown)
        return set(bad)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        clips = self.list_clips()
        self.check_clips(clips)
        cache = self._cache(clips)
        skip = self.apply_bad_file_policy(clips, cache)
        for name, idx in self.split(clips).items():
            idx = [i for i in idx if i not in skip]
            self.splits[name] = ClipDataset(
                cache,
                idx,
                [clips[i].label for i in idx],
                self.clip_samples,
                train=name == "train",
                windows=None if name == "train" else self.eval_windows,
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
        sampler, trainer = None, self.trainer
        if not train and trainer is not None and trainer.world_size > 1:
            # several processes (DDP): each evaluates its own share and every clip exactly once, where Lightning's
            # DistributedSampler would pad with repeats; Lightning keeps a DistributedSampler it is given, and
            # shards the training set itself. Metrics are torchmetrics, summed over the processes.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(
                self.splits[name], num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return DataLoader(
            self.splits[name],
            batch_size=self.batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return [self._loader("val"), self._loader("test")] if self.validate_test_fold else self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    # --- on the device -----------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """(wave (B, T), y) -> (spec (B, C, n_mels, frames), y); augmentation in training only.

        Windowed evaluation batches (wave (B, W, T)) become spec (B, W, C, n_mels, frames); the model averages
        the logits of the W windows.
        """
        wave, *rest = batch if isinstance(batch, list | tuple) else (batch,)
        training = self.trainer is not None and self.trainer.training
        self.frontend.to(wave.device)
        if training:
            wave = self.wave_augment(wave)
        if wave.ndim == 3:
            b, w, t = wave.shape
            spec = self.frontend(wave.reshape(b * w, t))  # (B*W, C, F, frames)
            spec = spec.reshape(b, w, *spec.shape[1:])
        else:
            spec = self.frontend(wave)
        if training:
            spec = self.spec_augment(spec)
        return (spec, *rest) if rest else spec


@torch.no_grad()
def compute_stats(
    datamodule: AudioDataModule, max_batches: int | None = None, per_channel: bool = True
) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[float, float]:
    """Mean and std of the frontend's output over a datamodule's training split, without augmentation.

    Put the result in ``frontend.mean`` / ``frontend.std`` to normalise with training-set statistics. The
    datamodule's own normalisation (if any) is ignored, so the figures are always of the raw log-mel.

    Args:
        datamodule: set up (or set-up-able) datamodule; its training loader is read once, in order.
        max_batches: stop after this many batches (``None`` reads the whole training split).
        per_channel: one (mean, std) per channel when True, one pair for all channels otherwise.

    Returns:
        ``(means, stds)`` as tuples of floats (one per channel), or two floats when ``per_channel`` is False.
    """
    datamodule.setup("fit")
    frontend = build_frontend(replace(datamodule.frontend.config, mean=None, std=None), datamodule.sample_rate)
    total = sq = count = None
    loader = torch.utils.data.DataLoader(datamodule.splits["train"], batch_size=datamodule.batch_size)
    for i, (wave, *_rest) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        spec = frontend(wave).double()  # (B, C, n_mels, frames)
        dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
        s, q, n = spec.sum(dims), (spec**2).sum(dims), spec.numel() / (1 if not per_channel else spec.shape[1])
        total, sq, count = (s, q, n) if total is None else (total + s, sq + q, count + n)
    if total is None:
        raise ConfigError("compute_stats: the training split is empty; check data.root and data.fold")
    mean = total / count
    std = (sq / count - mean**2).clamp_min(0).sqrt()
    log.info("frontend statistics over %d values: mean %s std %s", int(count), mean.tolist(), std.tolist())
    if per_channel:
        return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
    return round(mean.item(), 6), round(std.item(), 6)
