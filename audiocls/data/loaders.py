"""The DataLoaders of a split: shuffled or class-balanced training draws, unrepeated evaluation shards (DDP).

Training batches drop the last partial batch; validation and test keep every clip, each evaluated exactly once
even across several processes. Batches are page-locked only for a trainer on CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from audiocls.errors import ConfigError

__all__ = ["balanced_sampler", "make_loader"]


def _pins_memory(trainer) -> bool:
    """Page-locked batches only for a trainer on CUDA: a CPU run on a GPU host opens no CUDA context."""
    return trainer is not None and isinstance(getattr(trainer, "accelerator", None), CUDAAccelerator)


def balanced_sampler(labels, num_classes: int, trainer: Any, task: str) -> WeightedRandomSampler:
    """``data.sampler: balanced``: draws ``len(labels)`` clips with replacement, each with weight
    ``1 / (clips of its class)``, so every class is drawn equally often on average."""
    if trainer is not None and trainer.world_size > 1:
        raise ConfigError(
            f"data.sampler=balanced does not shard across {trainer.world_size} processes (DDP); "
            "use model.class_weights=balanced instead, or train on one device"
        )
    if task == "multilabel":
        raise ConfigError(
            "data.sampler=balanced weighs each clip by its one class; this data is multi-label "
            "(several labels per clip), where that is not defined: remove data.sampler"
        )
    counts = np.bincount(labels, minlength=num_classes)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)


def make_loader(
    dataset: Dataset,
    *,
    train: bool,
    batch_size: int,
    num_workers: int,
    trainer: Any,
    sampler: Sampler | None = None,
) -> DataLoader:
    """The loader of one split: ``train`` shuffles (unless ``sampler`` draws) and drops the last partial batch."""
    if not train and trainer is not None and trainer.world_size > 1:
        # several processes (DDP): each evaluates its own share and every clip exactly once, where Lightning's
        # DistributedSampler would pad with repeats; Lightning keeps a DistributedSampler it is given, and
        # shards the training set itself. Metrics are torchmetrics, summed over the processes.
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(
            dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=_pins_memory(trainer),
    )
