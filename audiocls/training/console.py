"""What a run prints: a progress bar that turns into periodic lines off a terminal, and a quiet start-up.

:class:`AudioProgressBar` is Lightning's TQDM bar (train/val metrics in it) on a terminal; where stdout (where
Lightning draws its bar) is not a terminal (CI, ``nohup``, a pipe) the bars are off and one line is printed every ``line_every_n_steps`` training
steps and after every validation, so a log file reads like a log. ``AudioCLI`` adds it to every run unless
``trainer.enable_progress_bar`` is false or another progress bar is configured.

:func:`quiet_third_party` hides, for the run it wraps, what is noise for an audiocls user: Lightning's tip advertising
another product, and the third-party deprecation warnings in :data:`QUIET_WARNINGS`, each by its message. Every
other warning stays visible, and nothing stays changed after the run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.trainer.states import TrainerFn

__all__ = [
    "AudioProgressBar",
    "QUIET_WARNINGS",
    "effective_batch_line",
    "format_metrics",
    "quiet_third_party",
    "summary_lines",
]

#: Lightning loggers whose info lines carry the "💡 Tip ... litlogger" advertisement
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tip ("💡 Tip: ... litlogger ..."); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip") or "litlogger" in message)


_DROP_TIPS = _DropTips()


#: third-party warnings an audiocls user can do nothing about, as ``warnings.filterwarnings`` arguments: the message
#: (a regex matched at its start) and the module the warning is attributed to (the line that called the API)
QUIET_WARNINGS = (
    # torch >= 2.10 deprecates LeafSpec; Lightning 2.6's utilities/_pytree.py still builds one every step
    {"category": FutureWarning, "message": r"`isinstance\(treespec, LeafSpec\)` is deprecated"},
    # Lightning 2.6's LightningCLI still calls jsonargparse API deprecated in 4.49 (instantiate_classes, skip_none)
    {"category": DeprecationWarning, "message": "", "module": r"lightning\.pytorch\.cli$"},
)


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within the block: drop Lightning's tip line and ignore the warnings of :data:`QUIET_WARNINGS`.

    The warning filters and the log filter are restored on exit (``warnings.catch_warnings``), so the process keeps
    no trace of them; every other warning, third-party deprecations included, is shown as Python shows it.
    """
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    added = [logger for logger in loggers if _DROP_TIPS not in logger.filters]
    with warnings.catch_warnings():
        for quiet in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", **quiet)
        for logger in added:
            logger.addFilter(_DROP_TIPS)
        try:
            yield
        finally:
            for logger in added:
                logger.removeFilter(_DROP_TIPS)


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


def effective_batch_line(trainer: Trainer, batch_size: int | None) -> str | None:
    """One line saying how many clips an optimizer step sees when several processes or accumulation multiply
    ``data.batch_size``; ``None`` when a step sees exactly one batch."""
    world, accumulate = trainer.world_size, trainer.accumulate_grad_batches
    if batch_size is None or world * accumulate == 1:
        return None
    parts = [f"{world} processes" if world > 1 else "", f"{accumulate} accumulated batches" if accumulate > 1 else ""]
    return (
        f"effective batch {world * accumulate * batch_size} clips per optimizer step: data.batch_size={batch_size} x "
        f"{' x '.join(p for p in parts if p)}; the learning rate is not scaled (see configs/trainer/ddp.yaml)"
    )


def summary_lines(trainer: Trainer, metrics: dict[str, float], run_dir: Path, *, weights: str) -> list[str]:
    """The end-of-run summary: headline test figures of ``weights`` (per-class accuracy is in ``metrics.json``),
    where the run and its checkpoints are."""
    headline = {k: v for k, v in sorted(metrics.items()) if not k.startswith("test/acc_class/")}
    per_class = len(metrics) - len(headline)
    lines = ["=" * 72, f"test ({weights}):  " + "  ".join(f"{k}={v:.4f}" for k, v in headline.items())]
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_score", None)
    if best is not None:
        monitor = getattr(callback, "monitor", None) or "monitored value"
        lines.append(f"best {monitor}={float(best):.4f} (checkpoint selection only, not a test figure)")
    if trainer.current_epoch or trainer.global_step:
        lines.append(f"trained {trainer.current_epoch} epochs, {trainer.global_step} steps")
    lines.append(f"run written to    {run_dir}")
    lines.append(
        f"metrics:          {run_dir / 'metrics.json'}" + (f" ({per_class} per-class figures)" if per_class else "")
    )
    for name in ("curves", "confusion"):
        if (run_dir / f"{name}.png").is_file():
            lines.append(f"{name + ':':<17} {run_dir / f'{name}.png'}")
    for label, path in (("last checkpoint:", getattr(callback, "last_model_path", "")),
                        ("best checkpoint:", getattr(callback, "best_model_path", ""))):  # fmt: skip
        if path:
            lines.append(f"{label:<17} {path}")
    lines.append("=" * 72)
    return lines
