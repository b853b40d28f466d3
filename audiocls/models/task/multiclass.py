"""Single-label classification (``model.task: multiclass``): softmax, cross-entropy, accuracy, the confusion matrix."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from audiocls.models.metrics import confusion_matrix, per_class_accuracy
from audiocls.models.task.base import Task, pct

__all__ = ["Multiclass"]


class Multiclass(Task):
    """One label per clip: softmax, cross-entropy, accuracy (micro), macro F1, top-5, the confusion matrix."""

    name = "multiclass"
    description = "single-label"
    monitor = "val/acc"
    headline = "acc"
    activation = "softmax"
    monitor_title = "val accuracy"
    report_columns = (("macro_f1", "macro F1 %"),)
    ensemble_keys = ("acc", "macro_f1")
    ensemble_rows = (("acc", "**mean ± std**", True), ("macro_f1", "macro F1 (mean)", False))
    ensemble_caption = "Final-epoch test-fold accuracy % (softmax outputs averaged over the runs per fold)"
    report_note = (
        "Final-epoch accuracy is the honest figure. Best-epoch accuracy picks, per fold, the epoch that scored best "
        "on the held-out test fold itself (the protocol of the paper's code), which flatters it. std is the sample "
        "standard deviation over folds. wall s is per fold process, start-up included; the last row sums them "
        "(folds overlap with --parallel)."
    )

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def loss(self, logits, y, *, weight=None, label_smoothing: float = 0.0) -> torch.Tensor:
        weight = None if weight is None else weight.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)

    def eval_loss(self, logits, y) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    def build_metrics(self, module, num_classes: int) -> None:
        module.train_acc = MulticlassAccuracy(num_classes, average="micro")
        module.val_acc = MulticlassAccuracy(num_classes, average="micro")
        module.val_acc_best = MaxMetric()
        module.val_acc_best.persistent(True)  # kept in checkpoints: val/acc_best stays right after a resume
        test = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        }
        if num_classes > 5:
            test["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        # compute_groups=False: with groups, torchmetrics shares the state of metrics whose states are equal after
        # the first update (on a class-sorted test set, macro F1 and top-5), and reports a wrong macro F1
        module.test_metrics = MetricCollection(test, prefix="test/", compute_groups=False)
        module.test_confmat = MulticlassConfusionMatrix(num_classes)
        #: after ``trainer.test``: confusion matrix (num_classes, num_classes), rows = true class
        module.test_confusion = None
        #: after ``trainer.test``: accuracy of each class (num_classes,), NaN for a class absent from the test set
        module.test_per_class_acc = None

    def train_update(self, module, logits, y) -> None:
        module.train_acc(logits.float(), y)
        module.log("train/acc", module.train_acc, on_step=False, on_epoch=True, prog_bar=True)

    def val_update(self, module, scores, y, log_kw: dict) -> None:
        module.val_acc(scores, y)
        module.log("val/acc", module.val_acc, on_step=False, **log_kw)

    def val_epoch_end(self, module) -> None:
        if module.trainer.sanity_checking:
            return
        module.val_acc_best(module.val_acc.compute())
        module.log("val/acc_best", module.val_acc_best.compute(), prog_bar=True)

    def test_epoch_start(self, module) -> None:
        module.test_confmat.reset()

    def test_update(self, module, scores, y) -> None:
        module.test_metrics.update(scores, y)
        module.test_confmat.update(scores, y)

    def test_epoch_end(self, module) -> None:
        confusion = module.test_confmat.compute().cpu()
        per_class = per_class_accuracy(confusion).float()
        module.test_confusion, module.test_per_class_acc = confusion, per_class
        module.log_per_class(per_class, "acc_class")

    def score(self, probs, labels) -> dict:
        """Accuracy and macro F1 (mean over the classes present in ``labels`` or predicted), and the confusion."""
        cm = confusion_matrix(labels, probs.argmax(1), probs.shape[1])
        tp = np.diag(cm).astype(float)
        denom = cm.sum(0) + cm.sum(1)
        present = denom > 0
        f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
        return {"acc": float(tp.sum() / max(len(labels), 1)), "macro_f1": float(f1[present].mean()), "confusion": cm}

    def headline_value(self, probs, labels) -> float:
        return float("nan") if not len(labels) else float((probs.argmax(1) == labels).mean())

    def per_class(self, folds, names):
        total = None
        for probs, labels in folds:
            cm = confusion_matrix(labels, probs.argmax(1), len(names))
            total = cm if total is None else total + cm
        per_class = {}
        if total is not None:
            acc = per_class_accuracy(torch.from_numpy(total)).tolist()
            per_class = {n: None if a != a else a for n, a in zip(names, acc, strict=True)}  # None: class absent
        fields = {"per_class_acc": per_class, "confusion": total.tolist() if total is not None else None}
        lines = []
        if per_class:
            lines += ["", "Per-class accuracy (final epoch, summed over folds), confusion matrix: confusion.png", ""]
            lines += ["| class | acc % |", "| --- | --- |"]
            lines += [f"| {n} | {pct(a)} |" for n, a in per_class.items()]
        return fields, lines, total
