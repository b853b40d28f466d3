"""Multi-label tagging (``model.task: multilabel``): sigmoid outputs, BCE loss and the mAP/F1 metrics.

Several labels per clip (FSD50K, AudioSet-style manifests, mixtures): targets are multi-hot (B, num_classes)
floats, outputs independent sigmoids, scored by mAP (macro average precision) and F1 at a threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "multilabel_loss",
    "multilabel_metrics",
    "per_class_ap",
    "THRESHOLD",
    "tune_thresholds",
    "ThresholdTuner",
    "PositiveRate",
    "label_frequency_baseline",
]

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


def tune_thresholds(probs: torch.Tensor, target: torch.Tensor, default: float = THRESHOLD) -> torch.Tensor:
    """The threshold of each class (K,) that maximises that class's F1 on ``probs`` (N, K) vs ``target`` (N, K).

    A label is predicted when its score is at least the threshold. Per class, every cut between two distinct
    sorted scores is a candidate; the best one's threshold is the midpoint between the lowest score kept and
    the highest score left out (the lowest kept when nothing is left out). Ties in F1 keep the higher threshold.
    A class without positives in ``target`` keeps ``default``.
    """
    probs, target = probs.detach().double().cpu(), target.detach().cpu() > 0.5
    out = torch.full((probs.shape[1],), float(default), dtype=torch.float)
    for k in range(probs.shape[1]):
        positives = int(target[:, k].sum())
        if positives == 0:
            continue
        scores, order = probs[:, k].sort(descending=True)
        hits = target[order, k].double()
        tp = hits.cumsum(0)
        f1 = 2 * tp / (torch.arange(1, len(hits) + 1, dtype=torch.double) + positives)
        cut = torch.ones(len(scores), dtype=torch.bool)  # a cut after i only where scores[i] > scores[i + 1]
        cut[:-1] = scores[:-1] > scores[1:]
        f1[~cut] = -1.0
        i = int(f1.argmax())  # the first maximum: the fewest labels kept, the highest threshold
        below = float(scores[i + 1]) if i + 1 < len(scores) else float(scores[i])
        out[k] = (float(scores[i]) + below) / 2
    return out


class ThresholdTuner(Metric):
    """Collects sigmoid scores (B, K) and multi-hot targets (B, K) of an epoch; ``compute()`` is
    :func:`tune_thresholds` of all of them, gathered over the processes (DDP) first."""

    full_state_update = False

    def __init__(self, default: float = THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.default = default
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.probs.append(probs.detach().float())
        self.target.append(target.detach().long())

    def compute(self) -> torch.Tensor:
        if isinstance(self.probs, list) and not self.probs:  # after a DDP sync the states are tensors
            raise ValueError("ThresholdTuner.compute() before any update")
        return tune_thresholds(dim_zero_cat(self.probs), dim_zero_cat(self.target), self.default)


class PositiveRate(Metric):
    """The share of clips labelled with each class (K,): the label frequency, summed over the processes (DDP).

    The mean of it over the classes with positives is the label-frequency baseline of mAP (what a constant score
    per class reaches); a class at 0 has no positives (its AP is undefined). Positives and the clip count are sum
    states, so under DDP the figures are those of the whole sharded test set.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state("positives", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, target: torch.Tensor) -> None:
        self.positives += (target > 0.5).long().sum(0)
        self.count += len(target)

    def compute(self) -> torch.Tensor:
        return self.positives.double() / self.count.clamp(min=1)


def label_frequency_baseline(rate: torch.Tensor) -> float:
    """The mAP of a constant score per class: the mean positive rate (K,) over the classes with positives."""
    present = rate > 0
    return float(rate[present].mean()) if bool(present.any()) else float("nan")
