"""Multi-label tagging (``model.task: multilabel``): sigmoid outputs, BCE loss and the mAP/F1 metrics.

Several labels per clip (FSD50K, AudioSet-style manifests, mixtures): targets are multi-hot (B, num_classes)
floats, outputs independent sigmoids, scored by mAP (macro average precision) and F1 at a threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

__all__ = ["TASKS", "multilabel_loss", "multilabel_metrics", "per_class_ap", "THRESHOLD"]

TASKS = ("multiclass", "multilabel")
#: the decision threshold of the F1 figures (and of ``audiocls predict --threshold``'s default)
THRESHOLD = 0.5


def multilabel_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean binary cross-entropy of logits (B, K) against multi-hot (or mixed) targets (B, K) in [0, 1].

    ``label_smoothing`` ``e`` moves every target towards 0.5: ``t * (1 - e) + e / 2`` (the binary form of
    cross-entropy smoothing).
    """
    target = target.to(logits.dtype)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / 2
    return F.binary_cross_entropy_with_logits(logits, target)


def multilabel_metrics(num_classes: int, prefix: str, threshold: float = THRESHOLD) -> MetricCollection:
    """``{prefix}mAP`` (macro AP), ``{prefix}f1_micro`` and ``{prefix}f1_macro`` at ``threshold``.

    Update with probabilities (B, K) (sigmoid already applied: torchmetrics would only apply it to values
    outside [0, 1]) and int multi-hot targets (B, K).
    """
    metrics = {
        "mAP": MultilabelAveragePrecision(num_classes, average="macro"),
        "f1_micro": MultilabelF1Score(num_classes, threshold=threshold, average="micro"),
        "f1_macro": MultilabelF1Score(num_classes, threshold=threshold, average="macro"),
    }
    # compute_groups=False: see the classifier's test metrics (shared states give wrong figures)
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


def per_class_ap(num_classes: int) -> MultilabelAveragePrecision:
    """Average precision of each class (num_classes,); NaN-free only for classes with positives."""
    return MultilabelAveragePrecision(num_classes, average=None)
