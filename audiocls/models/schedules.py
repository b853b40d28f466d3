"""Learning-rate schedules sized by the run: no step count is typed in a config.

A scheduler whose class takes ``total_steps`` (:class:`WarmupCosine`, torch's ``OneCycleLR``) gets it from the
trainer when the optimizer is configured: ``trainer.estimated_stepping_batches`` for a per-step schedule, the
epoch count for a per-epoch one. Changing the batch size, the epochs, ``limit_train_batches``, the validation
share, the dataset or the device count keeps the schedule ending exactly at the last step.

    model:
      optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 1.0e-3}}
      scheduler: {class_path: audiocls.models.schedules.WarmupCosine, init_args: {warmup: 0.05}}
      scheduler_interval: step
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from audiocls.errors import ConfigError

__all__ = ["WarmupCosine", "run_length", "takes_total_steps"]


class WarmupCosine(torch.optim.lr_scheduler.LambdaLR):
    """Linear warmup over a share of the run, then a half cosine that reaches ``final_lr`` at the last step.

    With ``warmup=0`` the learning rate at step ``t`` of ``total_steps`` is
    ``base * (final_lr + (1 - final_lr) * (1 + cos(pi * t / total_steps)) / 2)``, torch's ``CosineAnnealingLR``
    with ``T_max = total_steps`` and ``eta_min = final_lr * base``; after the last step it is ``final_lr * base``
    and stays there.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: scheduler steps in the whole run; filled in from the trainer by the classifier
            (:func:`run_length`), never typed in a config.
        warmup: share of ``total_steps`` over which the rate rises linearly from ``base / warmup_steps`` to ``base``.
        final_lr: the rate at the end, as a share of each group's initial rate.
        last_epoch: the index of the last step (``-1`` starts a new schedule).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        warmup: float = 0.0,
        final_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if total_steps is None:
            raise ConfigError(
                "WarmupCosine needs total_steps: it is sized by the run when the AudioClassifier configures its "
                "optimizer; do not construct it by hand without total_steps"
            )
        if total_steps < 1:
            raise ConfigError(f"WarmupCosine: total_steps={total_steps} must be >= 1 (the run has no training step)")
        if not 0 <= warmup < 1:
            raise ConfigError(f"model.scheduler.warmup={warmup} must lie in [0, 1) (a share of the run)")
        if not 0 <= final_lr <= 1:
            raise ConfigError(f"model.scheduler.final_lr={final_lr} must lie in [0, 1] (a share of the initial rate)")
        self.total_steps, self.warmup_steps, self.final_lr = total_steps, round(warmup * total_steps), final_lr
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the initial rate at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_lr + (1.0 - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def takes_total_steps(factory: Callable) -> bool:
    """Whether the scheduler ``factory`` has a ``total_steps`` argument left unset (to be sized by the run).

    ``factory`` is what LightningCLI injects (a ``functools.partial`` holding every init argument, unset ones as
    their defaults) or a scheduler class.
    """
    keywords = getattr(factory, "keywords", None)
    if keywords is not None:
        return "total_steps" in keywords and keywords["total_steps"] is None
    try:
        parameter = inspect.signature(factory).parameters.get("total_steps")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default in (None, inspect.Parameter.empty)


def run_length(trainer, interval: str) -> int:
    """The scheduler steps of the run: ``trainer.estimated_stepping_batches`` per step, ``max_epochs`` per epoch.

    Raises:
        ConfigError: a per-epoch schedule in a run bounded by steps only (``max_epochs=-1``).
    """
    if interval == "step":
        return int(trainer.estimated_stepping_batches)
    total = trainer.max_epochs
    if total is None or total < 1:
        raise ConfigError(
            f"a per-epoch schedule sized by the run needs trainer.max_epochs (got {total}); "
            "set model.scheduler_interval=step to size it by trainer.max_steps"
        )
    return total
