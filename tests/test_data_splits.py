"""The split's edge cases: a validation split never vanishes silently, small splits under DDP, pinned memory."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from audiocls.audio.augment import AugmentConfig
from audiocls.cli import main
from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip
from audiocls.errors import ConfigError
from tests.conftest import tiny_datamodule, tiny_frontend_config

SR = 8000


class ListedDataModule(AudioDataModule):
    """Clips given as a list: fold 2 is the test fold, fold 1 the training folds."""

    num_folds = 2

    def __init__(self, clips: list[Clip], num_classes: int, **kwargs):
        super().__init__(
            None, fold=2, sample_rate=SR, clip_seconds=0.25, batch_size=1, num_workers=0,
            frontend=tiny_frontend_config(), **kwargs,
        )  # fmt: skip
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self._clips = clips

    def list_clips(self) -> list[Clip]:
        return self._clips


def _wav(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, SR // 4).astype(np.float32), SR)
    return path


def _clips(root: Path, train_groups: dict[int, list[int]], test_per_class: int = 1) -> list[Clip]:
    """``train_groups[label]``: the clip count of each source recording of that class in fold 1."""
    clips, n = [], 0
    for label, sizes in train_groups.items():
        for g, size in enumerate(sizes):
            for _ in range(size):
                clips.append(Clip(_wav(root / f"{n}.wav", n), label, 1, f"rec{label}-{g}"))
                n += 1
        for _ in range(test_per_class):
            clips.append(Clip(_wav(root / f"{n}.wav", n), label, 2))
            n += 1
    return clips


def test_a_small_fraction_still_validates_every_class_with_two_recordings(tmp_path, caplog):
    """50 classes x 6 clips (3 recordings of 2): 0.03 of 6 rounds to 0, yet each class gives one recording."""
    groups = {y: [2, 2, 2] for y in range(50)}
    groups[50] = [6]  # one recording: it stays in training, said once
    dm = ListedDataModule(_clips(tmp_path, groups), num_classes=51, val_fraction=0.03)
    with caplog.at_level(logging.WARNING, logger="audiocls"):
        dm.setup("fit")
    clips = dm.list_clips()
    val = [clips[i] for i in dm.splits["val"].indices]
    train = [clips[i] for i in dm.splits["train"].indices]
    assert {c.label for c in val} == set(range(50))
    assert {c.group for c in val}.isdisjoint({c.group for c in train})  # no recording straddles
    assert all(sum(c.group == v.group for c in val) == 2 for v in val)  # whole recordings moved
    assert [c.group for c in train].count("rec50-0") == 6
    lines = [r.getMessage() for r in caplog.records if "single source recording" in r.getMessage()]
    assert len(lines) == 1 and "class50" in lines[0]
    assert dm.has_validation is True


def test_val_fraction_zero_skips_validation_and_says_so_once(tmp_path, caplog):
    dm = ListedDataModule(_clips(tmp_path, {0: [1, 1], 1: [1, 1]}), num_classes=2, val_fraction=0.0)
    dm.trainer = SimpleNamespace(world_size=1, is_global_zero=True, accelerator=CPUAccelerator(), limit_val_batches=1.0)
    with caplog.at_level(logging.INFO, logger="audiocls"):
        dm.setup("fit")
        dm.setup("test")
    assert dm.has_validation is False and dm.trainer.limit_val_batches == 0
    assert sum("no validation split" in r.getMessage() for r in caplog.records) == 1


def test_val_fraction_leaving_no_training_clips_names_the_setting(tiny_root):
    dm = tiny_datamodule(tiny_root, AugmentConfig())
    dm.val_fraction = 0.99
    with pytest.raises(ConfigError, match=r"no training clips: data.val_fraction=0.99"):
        dm.setup("fit")
        next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("split", ["val", "test"])
def test_split_smaller_than_the_world_size_is_one_clear_error(tmp_path, split):
    """1 clip on 2 processes: Lightning's unrepeated sampler would assert, and an idle rank would hang DDP."""
    train = {0: [1, 1, 1], 1: [1, 1, 1]} if split == "test" else {0: [1, 1], 1: [3]}
    clips = _clips(tmp_path, train, test_per_class=1 if split == "val" else 0)
    if split == "test":
        clips.append(Clip(_wav(tmp_path / "t.wav", 99), 0, 2))
    dm = ListedDataModule(clips, num_classes=2, val_fraction=0.2)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1, is_global_zero=False, accelerator=CPUAccelerator())
    with pytest.raises(ConfigError, match=rf"the {split} split .* has 1 clips, fewer than the 2 processes"):
        dm.setup("fit")
        getattr(dm, f"{split}_dataloader")()


def test_memory_is_pinned_only_for_a_cuda_trainer(tiny_root, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU host
    dm = tiny_datamodule(tiny_root, AugmentConfig())
    dm.setup("fit")
    for accelerator, pinned in ((CPUAccelerator(), False), (CUDAAccelerator(), True)):
        dm.trainer = SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True, accelerator=accelerator)
        assert dm.train_dataloader().pin_memory is pinned
        assert dm.test_dataloader().pin_memory is pinned
    dm.trainer = None
    assert dm.test_dataloader().pin_memory is False


def test_fit_without_validation_keeps_the_last_epoch_quietly(tiny_args, tmp_path, recwarn, caplog):
    with caplog.at_level(logging.INFO, logger="audiocls"):
        code = main(["fit", *tiny_args, "--data.val_fraction=0", "--trainer.max_epochs=2", "--test_after_fit=false"])
    assert code == 0
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "could not find the monitored key" in m or "Total length" in m], messages
    assert sum("no validation split" in r.getMessage() for r in caplog.records) == 1
    ckpts = tmp_path / "runs" / "audiocls" / "version_0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 1  # the second (last) epoch
