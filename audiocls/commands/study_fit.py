"""Inside each fit of a study: the validation key per epoch and the test figures into ``study_fit.json``, and the
validation key reported to the Optuna trial, so its pruner can stop a poor setting early.

The fit runs in its own process (as a user would run it), so the trial is reopened from the study's storage. The
integration package's ``PyTorchLightningPruningCallback`` is not used: it raises ``TrialPruned`` out of the fit
(a traceback and a failed process here) and reports every repeat of a setting at the same steps; this reports the
repeat ``r``'s epoch ``e`` at step ``r * STEPS_PER_REPEAT + e`` and stops the trainer instead. The pruning decision
is Optuna's (``trial.report`` / ``trial.should_prune``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from audiocls.files import atomic_write_text

__all__ = ["StudyRecorder", "RECORD", "STEPS_PER_REPEAT", "open_storage", "make_pruner"]

RECORD = "study_fit.json"
#: pruning steps reserved per repeat of a setting (repeat r reports its epochs from r * STEPS_PER_REPEAT)
STEPS_PER_REPEAT = 10_000


def open_storage(where: str):
    """An Optuna storage: an RDB URL (``sqlite:///...``, ``postgresql://...``) or a journal file's path."""
    import optuna

    if "://" in where:
        return optuna.storages.RDBStorage(where)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(where))


def make_pruner(name: str):
    """The study's pruner by name (``median``: below the median of the earlier settings at the same step, after 5
    settings; ``none``). Built the same way in the driver and in every fit process, which asks it."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5) if name == "median" else optuna.pruners.NopPruner()


class StudyRecorder(Callback):
    """Record one study fit's figures into ``dirpath/study_fit.json``; with a trial, report for pruning.

    Args:
        dirpath: the fit's folder.
        monitor: the validation key of the objective (``val/acc``).
        storage: the study's storage (see :func:`open_storage`); with ``study`` and ``trial_id``, report to it.
        study: the Optuna study name.
        trial_id: the trial's storage id.
        step_offset: the pruning step of this fit's epoch 0.
        report_from: the first epoch reported for pruning (earlier epochs say little; every repeat waits as long).
        pruner: the study's pruner (:func:`make_pruner`).
    """

    def __init__(
        self,
        dirpath: str,
        monitor: str,
        storage: str | None = None,
        study: str | None = None,
        trial_id: int | None = None,
        step_offset: int = 0,
        report_from: int = 0,
        pruner: str = "median",
    ) -> None:
        self.dirpath, self.monitor, self.step_offset, self.report_from = (
            Path(dirpath),
            monitor,
            step_offset,
            report_from,
        )
        self.storage, self.study, self.trial_id, self.pruner = storage, study, trial_id, pruner
        self.val: dict[int, float] = {}
        self.test: dict[str, float] = {}
        self.pruned_at: int | None = None
        self._trial = None

    def _trial_handle(self):
        if self._trial is None and self.storage and self.study and self.trial_id is not None:
            import optuna

            study = optuna.load_study(
                study_name=self.study, storage=open_storage(self.storage), pruner=make_pruner(self.pruner)
            )
            # optuna.trial.Trial(study, trial_id) is how a trial created elsewhere is reopened in another process
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def _write(self) -> None:
        record = {"monitor": self.monitor, "val": self.val, "test": self.test, "pruned_at": self.pruned_at}
        self.dirpath.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dirpath / RECORD, json.dumps(record, indent=2))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        prune = False
        if value is not None and trainer.is_global_zero:
            value = float(value)
            self.val[trainer.current_epoch] = value
            trial = self._trial_handle()
            if trial is not None and math.isfinite(value) and trainer.current_epoch >= self.report_from:
                trial.report(value, step=self.step_offset + trainer.current_epoch)
                prune = trial.should_prune()
        prune = trainer.strategy.broadcast(prune)  # every rank stops together
        if prune:
            trainer.should_stop = True
            self.pruned_at = trainer.current_epoch
        if trainer.is_global_zero:
            self._write()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            self._write()
