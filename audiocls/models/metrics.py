"""The one confusion matrix: torchmetrics' count, used by the classifier's test step and by the cv/ensemble reports."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

__all__ = ["confusion_matrix", "per_class_accuracy"]


def confusion_matrix(
    labels: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, num_classes: int
) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted class.

    The same count as the classifier's ``MulticlassConfusionMatrix`` (``test_confusion``), for predictions
    saved to disk: ``labels`` and ``pred`` (N,) class indices.
    """
    labels, pred = torch.as_tensor(np.asarray(labels)).long(), torch.as_tensor(np.asarray(pred)).long()
    if not len(labels):
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return multiclass_confusion_matrix(pred, labels, num_classes, validate_args=False).numpy().astype(np.int64)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class (num_classes,) from a confusion matrix (rows = true class); NaN for an absent class."""
    confusion = torch.as_tensor(confusion)
    support = confusion.sum(1)
    per_class = confusion.diag().double() / support.clamp(min=1)
    per_class[support == 0] = float("nan")
    return per_class
