"""The :class:`Task` interface: what a task owns (see :mod:`audiocls.models.task`)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["Task", "pct"]


class Task:
    """One kind of target: how a model is trained, scored and reported for it.

    Class attributes:
        name: the config string (``model.task``, ``data.task``).
        monitor: the validation key checkpoints and early stopping follow; ``mode`` says which way is better.
        headline: the figure a fold is judged by (``acc``, ``mAP``): ``final_{headline}`` in a fold's result.
        activation: what turns logits into scores (export metadata).
        thresholded: predictions are the labels over a threshold (else the top k classes).
    """

    name: ClassVar[str]
    #: the task in words, for messages (``single-label``)
    description: ClassVar[str]
    monitor: ClassVar[str]
    mode: ClassVar[str] = "max"
    headline: ClassVar[str]
    activation: ClassVar[str]
    thresholded: ClassVar[bool] = False
    #: the title of the monitor's panel in ``curves.png``
    monitor_title: ClassVar[str]
    #: the cv report's per-fold figures besides the headline ones: ``(result key, column header)``
    report_columns: ClassVar[tuple[tuple[str, str], ...]]
    #: the ensemble report's figures, the headline first, and its rows ``(key, label, with std)``
    ensemble_keys: ClassVar[tuple[str, ...]]
    ensemble_rows: ClassVar[tuple[tuple[str, str, bool], ...]]
    ensemble_caption: ClassVar[str]

    @property
    def curve_panels(self) -> tuple[tuple[str, str], ...]:
        """``(metrics.csv column, title)`` of the panels of ``curves.png``: the training loss and the monitor."""
        return (("train/loss_epoch", "train loss"), (self.monitor, self.monitor_title))

    # --- labels and per-class test figures, for trackers ---------------------------------------------------------
    def classes_of(self, target) -> tuple[int, ...]:
        """The classes of one training target (a class index here)."""
        return (int(target),)

    def per_class_test_figure(self, module) -> tuple[str, torch.Tensor] | None:
        """``(name, (num_classes,) values)`` a tracker shows per class after test instead of a confusion matrix,
        or ``None`` when the task has a confusion matrix (``module.test_confusion``)."""
        return None

    # --- the model side ------------------------------------------------------------------------------------------
    def check(self, *, class_weights: Any) -> None:
        """Raise :class:`ConfigError` for model settings this task cannot use."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, K) -> scores (B, K), in float32 whatever the logits' dtype (under bf16 scores near 0 and 1
        would tie, coarsening AP, tuned thresholds and the predicted scores)."""
        raise NotImplementedError

    def loss(self, logits, y, *, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss (``weight``: per-class weights, or ``None``)."""
        raise NotImplementedError

    def eval_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The validation and test loss: unweighted, unsmoothed."""
        return self.loss(logits, y)

    def build_metrics(self, module, num_classes: int) -> None:
        """Create the metric objects as attributes of ``module``."""
        raise NotImplementedError

    def train_update(self, module, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Update and log the training figure of a batch (logits detached)."""

    def val_update(self, module, scores: torch.Tensor, y: torch.Tensor, log_kw: dict) -> None:
        """Update (and log) the validation figures of a batch; ``scores`` are float32 logits."""

    def val_epoch_end(self, module) -> None:
        """Log the validation epoch's figures and the best ``monitor`` so far."""

    def test_epoch_start(self, module) -> None:
        """Reset the test metrics that are not logged (and so not reset by Lightning)."""

    def test_update(self, module, scores: torch.Tensor, y: torch.Tensor) -> None:
        module.test_metrics.update(scores, y)

    def test_epoch_end(self, module) -> None:
        """Log the test figures (``module.test_metrics`` are logged and reset by the module)."""

    def load_checkpoint(self, module, checkpoint: dict) -> None:
        """Fill in what an older checkpoint of this task lacks."""

    # --- saved outputs: predictions.npz, the cv and ensemble reports ------------------------------------------------
    def empty_labels(self, num_classes: int) -> tuple[int, ...]:
        """The shape of the labels of no clip."""
        return (0,)

    def score(self, probs: np.ndarray, labels: np.ndarray) -> dict:
        """The figures of saved scores ``probs`` (N, K) against ``labels``: ``headline`` and the report's ones."""
        raise NotImplementedError

    def headline_value(self, probs: np.ndarray, labels: np.ndarray) -> float:
        """The headline figure of ``probs`` (N, K) against ``labels``; NaN for no clip."""
        return float("nan") if not len(labels) else self.score(probs, labels)[self.headline]

    def fold_fields(self, metrics: dict, labels: np.ndarray) -> dict:
        """A fold result's fields besides ``final_``/``best_epoch_`` headline, from :meth:`score`."""
        return {key: metrics[key] for key, _ in self.report_columns}

    def report_head(self) -> dict:
        """Fields of ``cv_results.json`` after the config hash."""
        return {}

    report_title: ClassVar[str] = "{name}"
    report_note: ClassVar[str]

    def per_class(self, folds: list[tuple[np.ndarray, np.ndarray]], names: list[str]):
        """The report's per-class part from each done fold's ``(probs, labels)``.

        Returns:
            ``(fields of cv_results.json, Markdown lines, summed confusion matrix or None)``.
        """
        return {}, [], None


def pct(value: float | None) -> str:
    """A share as a percentage with two decimals; ``n/a`` for ``None``."""
    return "n/a" if value is None else f"{100 * value:.2f}"
