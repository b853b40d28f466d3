"""The callback every ``audiocls cv`` fold runs with: the held-out fold's figure after every validation epoch and
the final model's outputs on it (``predictions.npz``, which names the model's task)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback

from audiocls.commands.cv_report import EPOCHS, PREDICTIONS, write_json
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_bytes

__all__ = ["TestFoldEachEpoch", "gather_fold"]


def _loader_order(loader) -> list[int]:
    """Dataset positions of a non-shuffled evaluation loader, in the order this process sees them.

    Under DDP that is the datamodule's ``UnrepeatedDistributedSampler`` shard (every clip on exactly one rank).
    """
    return [int(i) for i in loader.sampler]


def gather_fold(trainer, pl_module, rows: list[tuple[torch.Tensor, torch.Tensor]], loader):
    """The task's scores (N, num_classes) and the labels of a whole evaluation set, gathered over the processes.

    Labels are as the loaders yield them: class indices (N,), or multi-hot int labels (N, num_classes) for a
    multi-label model.

    Args:
        rows: this process's ``(logits (B, K), labels (B,) or multi-hot (B, K))`` per batch, in loader order.
        loader: the loader that produced them (its sampler gives each row's position in the dataset).

    Returns:
        ``(probs, labels)`` as numpy arrays in dataset order, every clip once; every process gets them (the
        gather is a collective call: all processes must call this).
    """
    k = len(pl_module.class_names)
    device = pl_module.device
    probs = (
        torch.cat([pl_module.probabilities(r[0].float()) for r in rows]) if rows else torch.zeros(0, k, device=device)
    )
    empty = pl_module.task_type.empty_labels(k)
    labels = torch.cat([r[1] for r in rows]).long() if rows else torch.zeros(empty, dtype=torch.long, device=device)
    order = torch.tensor(_loader_order(loader)[: len(labels)], dtype=torch.long, device=device)
    if trainer.world_size > 1:
        from torchmetrics.utilities.distributed import gather_all_tensors  # pads and trims uneven shards

        probs, labels, order = (torch.cat(gather_all_tensors(t.to(device))) for t in (probs, labels, order))
    if len(set(order.tolist())) != len(order):
        raise RuntimeError("the evaluation shards overlap: a clip was scored by two processes")
    sort = order.argsort()
    return probs[sort].cpu().numpy(), labels[sort].cpu().numpy()


class TestFoldEachEpoch(Callback):
    """The task's headline figure on the held-out fold after every validation epoch, and the final model's
    test-fold outputs.

    The per-epoch figure is the model's task's headline (:attr:`audiocls.models.task.Task.headline`: accuracy,
    ``test_each_epoch/acc``, ``"acc"`` in the history; mAP for a multi-label model) and ``predictions.npz`` holds
    the task's scores (softmax, or sigmoids and multi-hot labels (N, num_classes)) and the task's name.

    During ``fit`` the datamodule's held-out fold is a second validation dataloader (the datamodule's
    ``validate_test_fold=true``, which ``audiocls cv`` passes), evaluated by Lightning's own loop (device, precision,
    DDP shards)
    and gathered over the processes. The per-epoch figures are the paper's protocol (picking the best of them
    flatters the result); they are logged as ``test_each_epoch/acc`` and written to ``test_each_epoch.json``.
    At the end of ``test`` (which ``audiocls fit`` runs on the final weights) the softmax outputs, labels, file
    names and class names of the whole fold are saved to ``predictions.npz`` for the report and
    :mod:`audiocls.commands.ensemble`. The history is kept in checkpoints, so a resumed fit continues it.

    Args:
        dirpath: where the files go; ``None`` is the trainer's ``log_dir``.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self.history: list[dict] = []
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _dir(self, trainer) -> Path:
        path = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and not getattr(trainer.datamodule, "validate_test_fold", False):
            raise ConfigError(
                "TestFoldEachEpoch scores the held-out fold as validation dataloader 1: set "
                "data.validate_test_fold=true with it (audiocls cv does)"
            )

    def _keep(self, outputs, batch) -> None:
        self._rows.append((outputs.detach(), batch[1].detach()))

    # per epoch: dataloader 1 of validation is the held-out fold
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if dataloader_idx == 1 and not trainer.sanity_checking:
            self._keep(outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not getattr(trainer.datamodule, "validate_test_fold", False):
            return
        probs, labels = gather_fold(trainer, pl_module, self._rows, trainer.val_dataloaders[1])
        self._rows = []
        task = pl_module.task_type
        key, value = task.headline, task.headline_value(probs, labels)
        self.history = [h for h in self.history if h["epoch"] != trainer.current_epoch]
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, key: value})
        pl_module.log(f"test_each_epoch/{key}", value, sync_dist=True)  # the same gathered figure on every process
        if trainer.is_global_zero:
            write_json(self._dir(trainer) / EPOCHS, self.history)

    # the final weights: the whole fold, saved
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        loader = trainer.test_dataloaders
        loader = loader[0] if isinstance(loader, list | tuple) else loader
        probs, labels = gather_fold(trainer, pl_module, self._rows, loader)
        self._rows = []
        if not trainer.is_global_zero:
            return
        test = getattr(trainer.datamodule, "splits", {}).get("test")
        files = [str(test.cache.files[i]) for i in test.indices] if hasattr(test, "cache") else []
        names = list(getattr(pl_module, "class_names", None) or range(probs.shape[1]))
        out = self._dir(trainer)
        buf = io.BytesIO()
        np.savez(
            buf, probs=probs, labels=labels, files=np.array(files, dtype=str), class_names=np.array(names, str),
            task=np.array(pl_module.task),
        )  # fmt: skip
        atomic_write_bytes(out / PREDICTIONS, buf.getvalue())
        write_json(out / EPOCHS, self.history)

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
