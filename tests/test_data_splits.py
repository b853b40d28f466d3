"""The split's edge cases: a validation split never vanishes silently, small splits under DDP, pinned memory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from audiocls.audio.augment import AugmentConfig
from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip
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
