"""The shared data side: :class:`AudioDataModule`, the base of every dataset module.

A dataset module subclasses :class:`AudioDataModule`, sets ``class_names`` and ``num_folds`` in its ``__init__``
and implements :meth:`AudioDataModule.list_clips`. The base class checks the settings and wires the parts, each
in its own module: the checks on the clip list and the split (:mod:`audiocls.data.split`), the decoded-audio
cache (:mod:`audiocls.data.cache`) and the bad-file policy (:mod:`audiocls.data.bad_files`), the training
statistics (:mod:`audiocls.data.statistics`), the stored spectrograms (:mod:`audiocls.data.precompute`), the
loaders (:mod:`audiocls.data.loaders`) and the device hook that turns waveforms into spectrograms
(:mod:`audiocls.data.on_device`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, WeightedRandomSampler

from audiocls.audio.augment import AugmentConfig, SpecAugment, WaveAugment
from audiocls.audio.frontend import FrontendConfig, build_frontend, check_frontend
from audiocls.audio.frontend_config import check_mel_bands
from audiocls.data.bad_files import apply_bad_file_policy, warn_suspicious
from audiocls.data.cache import DecodedCache
from audiocls.data.clips import Clip, ClipDataset
from audiocls.data.loaders import balanced_sampler, make_loader
from audiocls.data.on_device import to_spectrograms
from audiocls.data.precompute import SpecDataset, check_speed_settings, precompute_hint, store_spectrograms
from audiocls.data.split import (
    check_clips,
    check_fold,
    check_split_sizes,
    no_validation_cause,
    split_clips,
    warn_untrained_classes,
)
from audiocls.data.statistics import training_stats
from audiocls.errors import ConfigError

__all__ = ["AudioDataModule"]

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
            of the training folds instead (seeded, stratified, whole source recordings: see
            :func:`~audiocls.data.clips.grouped_val_split`).
        val_fraction: share of each class moved from training to validation when ``val_fold`` is None; above 0,
            every class with at least two source recordings in the training folds gives at least one. ``0``: no
            validation split; checkpoint selection then keeps the last epoch only (``last.ckpt``).
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
        normalize: ``train`` measures the per-channel mean and std of the frontend's output on the training
            split at ``setup`` (centre crops, no augmentation; never validation or test) and normalises with
            them; they are stored as ``frontend.mean``/``frontend.std`` in the hyperparameters (and the
            checkpoint), so predict/explain/export rebuild the same input. ``None`` uses ``frontend.mean/std``.
        precompute_frontend: compute every clip's spectrogram once at ``setup`` (train, val, test) and train on
            the stored images, with the spectrogram-side augmentation (time roll, masks) drawn per batch; the
            device hook then skips the frontend. Evaluation outputs are identical to the per-batch path. Needs
            all waveform augmentation off (gain, shift, pitch, stretch); training clips are centre crops.
        sampler: ``balanced`` draws the training batches with replacement, each clip with weight
            ``1 / (clips of its class in the training split)``, so every class is drawn equally often on average
            (``len(train)`` draws per epoch); validation and test are untouched. ``None`` shuffles. Not
            available with several processes (DDP): use ``model.class_weights: balanced`` there.
        validate_test_fold: ``val_dataloader`` returns ``[val, test]``: the held-out fold is evaluated after every
            validation epoch as dataloader 1, for the paper's best-epoch figure (``audiocls cv`` sets it in each
            fold's command, with :class:`audiocls.commands.cv_callback.TestFoldEachEpoch`).
    """

    num_folds: int = 1
    class_names: list[str]
    #: ``multiclass`` (one label per clip) or ``multilabel`` (several: multi-hot targets); linked to ``model.task``.
    #: A dataset module with several labels per clip sets it in ``__init__`` and fills :attr:`Clip.labels`.
    task: str = "multiclass"

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
        normalize: Literal["train"] | None = None,
        precompute_frontend: bool = False,
        sampler: Literal["balanced"] | None = None,
        validate_test_fold: bool = False,
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
        self.validate_test_fold = validate_test_fold
        if sampler not in (None, "balanced"):
            raise ConfigError(f"data.sampler={sampler!r} is not one of: balanced, null")
        self.sampler = sampler
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
        check_mel_bands(frontend, self.sample_rate)
        check_speed_settings(frontend, augment, normalize, precompute_frontend)
        self.normalize, self.precompute_frontend = normalize, precompute_frontend
        self.frontend = build_frontend(frontend, self.sample_rate)
        self.wave_augment, self.spec_augment = WaveAugment(augment), SpecAugment(augment)
        self.splits: dict[str, ClipDataset | SpecDataset] = {}
        #: whether :meth:`setup` found a non-empty validation split (``None`` before setup); without one the
        #: trainer skips validation and the checkpoint callback keeps the last epoch only
        self.has_validation: bool | None = None

    def record_hparam(self, key: str, value) -> None:
        """Set a hyperparameter discovered after ``__init__``: only ``class_names`` read from the data (a folder's
        sub-folders, a manifest's labels), which must equal the model's linked ``class_names``, since Lightning
        merges both modules' hyperparameters for the logger and refuses a key with two values. Writes the logged
        copy too: Lightning has no public setter for ``hparams_initial`` (the private ``_hparams_initial``)."""
        self.hparams[key] = value
        if hasattr(self, "_hparams_initial"):
            self._hparams_initial[key] = copy.deepcopy(value)

    # --- what a dataset module provides -------------------------------------------------------------------
    def list_clips(self) -> list[Clip]:
        """Every clip of the dataset, in a fixed order."""
        raise NotImplementedError

    def require_root(self, layout: str, download: str | None = None, archive_dir: str = ".") -> Path:
        """``self.root``; :class:`ConfigError` saying what to pass when it is unset.

        Args:
            layout: what the folder holds, for the message.
            download: the dataset's name for ``audiocls data download``, when it can be fetched.
            archive_dir: the folder the download unpacks to, under its ``--root``.
        """
        if self.root is None:
            fetch = ""
            if download:
                where = "~/data" if archive_dir == "." else f"~/data/{archive_dir}"
                fetch = f" (to fetch it: audiocls data download {download} --root ~/data, then --data.root {where})"
            raise ConfigError(f"data.root is not set: pass --data.root DIR, the folder holding {layout}{fetch}")
        return self.root

    def check_fold(self) -> None:
        """Raise :class:`ConfigError` when ``fold``/``val_fold`` are not fold ids of this dataset."""
        check_fold(self.fold, self.val_fold, self.num_folds, type(self).__name__)

    def check_clips(self, clips: Sequence[Clip]) -> None:
        """:class:`DataError` for labels or folds out of range and for files listed twice, naming them."""
        check_clips(clips, self.num_classes, self.num_folds, type(self).__name__, self.root)

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
        return split_clips(
            clips,
            self.fold,
            self.val_fold,
            self.val_fraction,
            self.seed,
            name=type(self).__name__,
            root=self.root,
            class_names=self.class_names,
            warn=self._is_rank_zero(),
        )

    def _is_rank_zero(self) -> bool:
        return self.trainer is None or self.trainer.is_global_zero

    def _targets(self, clips: Sequence[Clip]) -> list:
        """What the loaders yield as ``y``: class indices, or multi-hot (num_classes,) float32 for ``multilabel``."""
        if self.task == "multilabel":
            return [c.multi_hot(self.num_classes) for c in clips]
        return [c.label for c in clips]

    def _cache(self, clips: Sequence[Clip]) -> DecodedCache:
        return DecodedCache([c.path for c in clips], self.sample_rate, self.cache_dir)

    def prepare_data(self) -> None:
        clips = self.list_clips()
        self.check_clips(clips)
        self._cache(clips).build()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        clips = self.list_clips()
        self.check_clips(clips)
        cache = self._cache(clips)
        skip = apply_bad_file_policy(clips, cache, self.skip_bad_files)
        if self._is_rank_zero():
            warn_suspicious(clips, cache, skip, type(self).__name__)
        kept = {name: [i for i in idx if i not in skip] for name, idx in self.split(clips).items()}
        if self._is_rank_zero():
            warn_untrained_classes(clips, kept, self.class_names, fold=self.fold)
        for name, idx in kept.items():
            self.splits[name] = ClipDataset(
                cache,
                idx,
                self._targets([clips[i] for i in idx]),
                self.clip_samples,
                train=name == "train",
                windows=None if name == "train" else self.eval_windows,
            )
        sizes = {k: len(v) for k, v in self.splits.items()}
        log.info("%s fold %s: %s clips", type(self).__name__, self.fold, sizes)
        self.check_split_sizes(sizes)
        self.has_validation = sizes["val"] > 0
        if not self.has_validation and self.trainer is not None and not self.validate_test_fold:
            self.trainer.limit_val_batches = 0  # no loop to run: Lightning would warn of an empty loader each epoch
        if not self.has_validation and self._is_rank_zero():
            log.warning(
                "no validation split (%s): checkpoint selection uses the last epoch only (last.ckpt, no best.ckpt)",
                no_validation_cause(self.val_fold, self.val_fraction),
            )
        stopping = getattr(self.trainer, "early_stopping_callbacks", None) or []
        if not self.has_validation and any(str(c.monitor).startswith("val/") for c in stopping):
            raise ConfigError(
                f"early stopping watches {stopping[0].monitor}, but there is no validation split "
                f"(data.val_fraction={self.val_fraction}, data.val_fold={self.val_fold}): raise data.val_fraction "
                "or leave out configs/callbacks/early_stopping.yaml"
            )
        if 0 < sizes["train"] < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the training set ({sizes['train']} clips) "
                f"and the last partial batch is dropped; lower data.batch_size to at most {sizes['train']}"
            )
        self._prepare_inputs()

    def check_split_sizes(self, sizes: dict[str, int]) -> None:
        """:class:`ConfigError` for an empty training split, or an evaluated split smaller than the process count
        (see :func:`audiocls.data.split.check_split_sizes`)."""
        check_split_sizes(
            sizes,
            name=type(self).__name__,
            fold=self.fold,
            val_fold=self.val_fold,
            val_fraction=self.val_fraction,
            world=int(getattr(self.trainer, "world_size", 1) or 1),
        )

    # --- normalisation and stored spectrograms (data.normalize, data.precompute_frontend) ------------------
    def _raw_frontend(self):
        return build_frontend(replace(self.frontend.config, mean=None, std=None), self.sample_rate)

    def _prepare_inputs(self) -> None:
        """Measure the training statistics (``normalize: train``) and store the spectrograms (``precompute``)."""
        if not self.precompute_frontend and (self.trainer is None or self.trainer.is_global_zero):
            hint = precompute_hint(self.wave_augment.config, self.splits.get("train"), self.trainer)
            if hint:
                log.info(hint)
        if self.normalize != "train" and not self.precompute_frontend:
            return
        raw = self._raw_frontend()
        if self.precompute_frontend:
            self.splits = store_spectrograms(
                self.splits, raw, self.batch_size, self.trainer, self.cache_dir, self.num_workers
            )
        if self.normalize == "train":
            self.set_frontend_stats(*training_stats(self.splits["train"], raw, self.batch_size))

    def set_frontend_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalise with per-channel ``mean``/``std`` from now on. They are measured state, not settings: the
        checkpoint keeps them in the datamodule's :meth:`state_dict` (the hyperparameters stay as configured)."""
        config = replace(self.frontend.config, mean=tuple(mean), std=tuple(std))
        check_frontend(config, self.sample_rate)
        self.frontend = build_frontend(config, self.sample_rate)
        log.info("frontend statistics of the training split: mean %s std %s", list(mean), list(std))

    def state_dict(self) -> dict:
        """The measured statistics, so a resumed or tested checkpoint uses the ones it was trained with."""
        cfg = self.frontend.config
        return {"frontend_mean": cfg.mean, "frontend_std": cfg.std} if self.normalize == "train" else {}

    def load_state_dict(self, state_dict: dict) -> None:
        mean, std = state_dict.get("frontend_mean"), state_dict.get("frontend_std")
        if self.normalize == "train" and mean is not None and std is not None:
            if (tuple(mean), tuple(std)) != (self.frontend.config.mean, self.frontend.config.std):
                log.warning("data.normalize=train: using the checkpoint's statistics, not this data's")
            self.set_frontend_stats(mean, std)

    # --- loaders -----------------------------------------------------------------------------------------
    def train_class_counts(self) -> list[int]:
        """Clips of each class (num_classes,) in the training split; after :meth:`setup`."""
        if "train" not in self.splits:
            raise RuntimeError("train_class_counts() needs setup() first")
        return np.bincount(self.splits["train"].labels, minlength=self.num_classes).tolist()

    def balanced_sampler(self) -> WeightedRandomSampler:
        """``data.sampler: balanced``: draws from the training split by inverse class frequency, with replacement."""
        return balanced_sampler(self.splits["train"].labels, self.num_classes, self.trainer, self.task)

    def _loader(self, name: str) -> DataLoader:
        train = name == "train"
        sampler = self.balanced_sampler() if train and self.sampler == "balanced" else None
        return make_loader(
            self.splits[name],
            train=train,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            trainer=self.trainer,
            sampler=sampler,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation loader (and the test fold's with ``validate_test_fold``).

        Without a validation split :meth:`setup` sets the trainer's ``limit_val_batches`` to 0, so Lightning skips
        the loop instead of warning about an empty loader every epoch, and this is not called.
        """
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
        spec = to_spectrograms(
            wave,
            self.frontend,
            self.wave_augment,
            self.spec_augment,
            training=training,
            precomputed=self.precompute_frontend,
        )
        return (spec, *rest) if rest else spec
