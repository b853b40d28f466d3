"""What a run prints: a progress bar that turns into periodic lines off a terminal, and a quiet start-up.

:class:`AudioProgressBar` is Lightning's TQDM bar (train/val metrics in it) on a terminal; where stdout (where
Lightning draws its bar) is not a terminal (CI, ``nohup``, a pipe) the bars are off and one line is printed every ``line_every_n_steps`` training
steps and after every validation, so a log file reads like a log. ``AudioCLI`` adds it to every run unless
``trainer.enable_progress_bar`` is false or another progress bar is configured.

:func:`quiet_third_party` hides what is noise for an audiocls user: Lightning's tip advertising another product
and deprecation warnings raised inside third-party packages. Warnings issued by audiocls itself stay visible.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.trainer.states import TrainerFn

__all__ = ["AudioProgressBar", "quiet_third_party", "format_metrics"]

#: Lightning loggers whose info lines carry the "💡 Tip ... litlogger" advertisement
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tip ("💡 Tip: ... litlogger ..."); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip") or "litlogger" in message)


_DROP_TIPS = _DropTips()


def quiet_third_party() -> None:
    """Silence Lightning's tip line and third-party deprecation warnings; idempotent.

    ``DeprecationWarning``/``FutureWarning`` are ignored unless the code that triggers them is an audiocls module
    (for example torch's ``LeafSpec`` deprecation raised from Lightning's ``_pytree.py`` is hidden, a deprecation
    warning raised by ``audiocls.*`` is shown); jsonargparse's deprecation notices are hidden too. Other warning
    categories are untouched.
    """
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_TIPS not in logger.filters:
            logger.addFilter(_DROP_TIPS)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"audiocls(\.|$)")  # first match wins
    try:  # jsonargparse's own deprecations name the calling line (audiocls code calling its API): still third-party
        from jsonargparse._deprecated import JsonargparseDeprecationWarning
    except ImportError:  # pragma: no cover - another jsonargparse layout
        return
    warnings.filterwarnings("ignore", category=JsonargparseDeprecationWarning)


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name=value`` pairs of scalar metrics, floats to 4 digits, ``v_num`` left out."""
    parts = []
    for key, value in metrics.items():
        if key == "v_num":
            continue
        value = value.item() if hasattr(value, "item") else value
        parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return "  ".join(parts)


class AudioProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar on a terminal; periodic plain lines anywhere else.

    Args:
        refresh_rate: steps between bar updates (terminal only).
        leave: keep each epoch's bar on screen after it ends.
        line_every_n_steps: off a terminal, print a line every this many training steps (and the last step).
        interactive: ``None`` decides from ``sys.stdout.isatty()``; ``True``/``False`` force bars or lines.
    """

    def __init__(
        self,
        refresh_rate: int = 1,
        leave: bool = False,
        line_every_n_steps: int = 50,
        interactive: bool | None = None,
    ):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        if line_every_n_steps < 1:
            raise ValueError(f"line_every_n_steps={line_every_n_steps} must be at least 1")
        self.line_every_n_steps = line_every_n_steps
        self._interactive = interactive

    @property
    def interactive(self) -> bool:
        """Whether bars are drawn (a terminal) rather than lines printed."""
        if self._interactive is not None:
            return self._interactive
        return bool(getattr(sys.stdout, "isatty", lambda: False)())

    def _line(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    # off a terminal every bar is a disabled tqdm: Lightning's bookkeeping runs, nothing is drawn
    def _quiet_bar(self, bar_factory) -> Tqdm:
        return bar_factory() if self.interactive else Tqdm(disable=True)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._quiet_bar(super().init_sanity_tqdm)

    def init_train_tqdm(self) -> Tqdm:
        return self._quiet_bar(super().init_train_tqdm)

    def init_validation_tqdm(self) -> Tqdm:
        return self._quiet_bar(super().init_validation_tqdm)

    def init_test_tqdm(self) -> Tqdm:
        return self._quiet_bar(super().init_test_tqdm)

    def init_predict_tqdm(self) -> Tqdm:
        return self._quiet_bar(super().init_predict_tqdm)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.interactive or not self.is_enabled:
            return
        step, total = batch_idx + 1, self.total_train_batches
        if step % self.line_every_n_steps == 0 or step == total:
            shown = f"{step}/{total}" if isinstance(total, int) else str(step)
            metrics = format_metrics(self.get_metrics(trainer, pl_module))
            self._line(f"epoch {trainer.current_epoch} step {shown}  {metrics}".rstrip())

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.interactive or not self.is_enabled or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if not k.startswith("train/")}
        self._line(f"epoch {trainer.current_epoch} validated  {format_metrics(metrics)}".rstrip())
