"""Weight averaging whose memory is a share of the run, so no decay is sized by hand to one dataset's steps."""

from __future__ import annotations

import logging

from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.optim.swa_utils import get_ema_avg_fn

from audiocls.errors import ConfigError

__all__ = ["RunEMA", "ema_decay"]

log = logging.getLogger(__name__)


def ema_decay(memory: float, total_steps: int) -> float:
    """The EMA decay that remembers about ``memory * total_steps`` steps: ``1 - 1 / (memory * total_steps)``.

    The averaging window of an EMA with decay ``d`` is ``1 / (1 - d)`` updates. Fewer than 2 steps of memory
    average nothing, so the decay is 0 then (the average is the latest weights).
    """
    window = memory * total_steps
    return 0.0 if window <= 1 else 1.0 - 1.0 / window


class RunEMA(EMAWeightAveraging):
    """Lightning's :class:`EMAWeightAveraging` with its decay sized at fit start from the run's length.

    Validation runs on the averaged weights, checkpoints hold them, and at the end of fit they replace the raw
    ones (Lightning's behaviour, unchanged).

    Args:
        memory: the averaging window as a share of the run's optimizer steps (``trainer.estimated_stepping_batches``):
            0.37 remembers about 100 of 270 steps (decay 0.99).
        update_starting_at_step: first optimizer step (0-based) that updates the average.
        update_every_n_steps: update the average every this many steps.
    """

    def __init__(self, memory: float = 0.37, update_starting_at_step: int | None = 1, update_every_n_steps: int = 1):
        if not 0 < memory <= 1:
            raise ConfigError(f"RunEMA memory={memory} must lie in (0, 1] (a share of the run's steps)")
        super().__init__(update_starting_at_step=update_starting_at_step, update_every_n_steps=update_every_n_steps)
        self.memory = memory
        self.decay: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            updates = max(1, int(trainer.estimated_stepping_batches) // max(1, self.update_every_n_steps))
            self.decay = ema_decay(self.memory, updates)
            # the averaging function is handed to AveragedModel by the parent's setup, from these kwargs
            self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)
            log.info("EMA of the weights: decay %.5f (%.0f of %d updates)", self.decay, self.memory * updates, updates)
        super().setup(trainer, pl_module, stage)
