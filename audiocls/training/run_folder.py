"""The run's folder: where a run writes its files (:func:`run_dir`) and its resolved ``config.yaml``.

Every logger places a run differently (a CSV/TensorBoard version folder, a W&B run id); :func:`run_dir` is the
one answer the rest of the package uses (the run record, ``metrics.json``, the confusion matrix, the config).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from audiocls.training import tracking

__all__ = ["LoggedSaveConfigCallback", "run_dir"]


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run, without a collective call (safe on rank 0 alone).

    A CSV/TensorBoard logger's version folder. For a W&B run, the folder that holds its ``checkpoints/``
    (``checkpoint.dirpath``'s parent when that is a ``checkpoints`` folder, else ``<save_dir>/<project>/<run id>``
    as ``ModelCheckpoint`` places it), so two runs never share a folder. Otherwise the first logger's
    ``log_dir``/``save_dir``, or the trainer's ``default_root_dir``.
    """
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, CSVLogger | TensorBoardLogger):
        return Path(logger.log_dir)
    if isinstance(logger, WandbLogger):
        ckpt_dir = getattr(trainer.checkpoint_callback, "dirpath", None)
        if ckpt_dir and Path(ckpt_dir).name == "checkpoints":
            return Path(ckpt_dir).parent
        version = logger.version
        base = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name)
        return base / version if isinstance(version, str) else base
    return Path(getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir)


class LoggedSaveConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the run's folder (:func:`run_dir`), and the same resolved config in W&B
    (:func:`audiocls.training.tracking.log_config`) when the run has a ``WandbLogger``."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            path = run_dir(trainer) / self.config_filename if trainer.is_global_zero else None
            exists = trainer.strategy.broadcast(bool(path is not None and path.is_file() and not self.overwrite))
            if exists:
                raise RuntimeError(
                    f"{path or self.config_filename} exists already: delete it, or pass "
                    "save_config_kwargs={'overwrite': True} to overwrite it"
                )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.parser.save(
                    self.config, str(path), skip_none=False, overwrite=self.overwrite, multifile=self.multifile
                )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            return
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        resolved.pop("config", None)  # the paths of the config files, not settings
        tracking.log_config(trainer, resolved)
