"""Multi-label tagging (``model.task: multilabel``) as a :class:`Task`; the loss, metrics and threshold tuning it
uses are in :mod:`audiocls.models.multilabel`."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import MaxMetric

from audiocls.errors import ConfigError
from audiocls.models.multilabel import (
    THRESHOLD,
    PositiveRate,
    ThresholdTuner,
    label_frequency_baseline,
    multilabel_loss,
    multilabel_metrics,
    per_class_ap,
)
from audiocls.models.task.base import Task, pct

__all__ = ["Multilabel"]


class Multilabel(Task):
    """Several labels per clip: independent sigmoids, binary cross-entropy on multi-hot targets, mAP, F1 at the
    threshold (and at per-class thresholds tuned on the validation split), the label-frequency baseline."""

    name = "multilabel"
    description = "multi-label"
    monitor = "val/mAP"
    headline = "mAP"
    activation = "sigmoid"
    thresholded = True
    monitor_title = "val mAP"
    report_columns = (
        ("f1_micro", f"F1 micro % @{THRESHOLD}"),
        ("f1_macro", f"F1 macro % @{THRESHOLD}"),
        ("mAP_baseline", "label-frequency mAP %"),
    )
    ensemble_keys = ("mAP", "f1_micro", "f1_macro")
    ensemble_rows = (("mAP", "**mean ± std**", True), ("f1_micro", "F1 micro ± std", True), ("f1_macro", "F1 macro ± std", True))  # fmt: skip
    ensemble_caption = "Final-epoch test-fold mAP % (multi-label: sigmoid outputs averaged over the runs per fold)"
    report_title = "{name} (multi-label)"
    report_note = (
        "Final-epoch mAP (macro average precision over the classes with positives in the fold) is the honest figure; "
        "best-epoch mAP picks the epoch that scored best on the held-out fold itself (the paper's protocol), which "
        f"flatters it. F1 at the fixed threshold {THRESHOLD}. The label-frequency mAP is what a constant score per "
        "class reaches. std is the sample standard deviation over folds."
    )

    def classes_of(self, target) -> tuple[int, ...]:
        """The 1s of a multi-hot (num_classes,) target."""
        return tuple(int(k) for k in (torch.as_tensor(target) > 0.5).nonzero().flatten())

    def per_class_test_figure(self, module) -> tuple[str, torch.Tensor] | None:
        ap = getattr(module, "test_per_class_ap", None)
        return ("AP", ap) if isinstance(ap, torch.Tensor) else None

    def check(self, *, class_weights) -> None:
        if class_weights is not None:
            raise ConfigError(
                "model.class_weights weighs the single-label cross-entropy; with model.task=multilabel set it "
                "to null (or balance the data with data.sampler=balanced)"
            )

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def loss(self, logits, y, *, weight=None, label_smoothing: float = 0.0) -> torch.Tensor:
        # linear in the target, so the mixup sum equals BCE on the mixed multi-hot targets
        return multilabel_loss(logits, y, label_smoothing)

    def build_metrics(self, module, num_classes: int) -> None:
        module.train_f1 = multilabel_metrics(num_classes, "train/")["f1_micro"]
        module.val_metrics = multilabel_metrics(num_classes, "val/")
        module.val_map_best = MaxMetric()
        module.val_map_best.persistent(True)
        module.test_metrics = multilabel_metrics(num_classes, "test/")
        module.test_ap = per_class_ap(num_classes)
        module.test_rate = PositiveRate(num_classes)  # sum states: the baseline of the whole test set under DDP
        # F1 at the tuned thresholds: the scores are binarised with them first, so 0.5 then keeps exactly those
        tuned = multilabel_metrics(num_classes, "test/")
        module.test_f1_tuned = type(tuned)(
            {f"{k}_tuned": tuned[k] for k in ("f1_micro", "f1_macro")}, prefix="test/", compute_groups=False
        )
        module.threshold_tuner = ThresholdTuner()
        #: per-class decision thresholds (num_classes,): :data:`THRESHOLD` until tuned on the validation split
        #: (max F1 per class after every validation epoch), saved in checkpoints, used by ``audiocls predict``
        module.register_buffer("thresholds", torch.full((num_classes,), THRESHOLD))
        module.register_buffer("thresholds_tuned", torch.tensor(False))
        module.test_confusion = module.test_per_class_acc = None  # single-label figures
        #: after ``trainer.test``: average precision of each class (num_classes,), NaN for a class without positives
        module.test_per_class_ap = None

    def train_update(self, module, logits, y) -> None:  # the batch's own labels (mixed targets rounded)
        module.train_f1(self.probabilities(logits), (y > 0.5).long())
        module.log("train/f1_micro", module.train_f1, on_step=False, on_epoch=True, prog_bar=True)

    def val_update(self, module, scores, y, log_kw: dict) -> None:
        probs = self.probabilities(scores)
        module.val_metrics.update(probs, y.long())
        module.threshold_tuner.update(probs, y.long())

    def val_epoch_end(self, module) -> None:
        values = module.val_metrics.compute()
        module.val_metrics.reset()
        module.log_dict(values, prog_bar=True)
        if not module.trainer.sanity_checking and module.threshold_tuner.update_called:
            # the checkpoints of this epoch carry thresholds tuned on its own validation outputs
            module.thresholds.copy_(module.threshold_tuner.compute().to(module.thresholds))
            module.thresholds_tuned.fill_(True)
        module.threshold_tuner.reset()
        if not module.trainer.sanity_checking:
            module.val_map_best(values["val/mAP"])
            module.log("val/mAP_best", module.val_map_best.compute(), prog_bar=True)

    def test_epoch_start(self, module) -> None:
        for metric in (module.test_ap, module.test_rate, module.test_f1_tuned):
            metric.reset()

    def test_update(self, module, scores, y) -> None:
        probs, target = self.probabilities(scores), y.long()
        module.test_metrics.update(probs, target)
        module.test_ap.update(probs, target)
        module.test_rate.update(target)
        module.test_f1_tuned.update((probs >= module.thresholds).long(), target)

    def test_epoch_end(self, module) -> None:
        rate = module.test_rate.compute().cpu()  # synced over the processes, as the AP states are
        # torchmetrics gives a class without positives AP 0: masked NaN
        module.test_per_class_ap = module.test_ap.compute().cpu().float().masked_fill(rate == 0, float("nan"))
        module.log_per_class(module.test_per_class_ap, "ap_class")
        # what a constant score per class reaches: mAP is only meaningful above it
        module.log("test/mAP_baseline", label_frequency_baseline(rate))
        if bool(module.thresholds_tuned):
            module.log_dict(module.test_f1_tuned.compute())

    def load_checkpoint(self, module, checkpoint: dict) -> None:
        """A checkpoint written before thresholds were tuned loads with the default ones."""
        state = checkpoint.get("state_dict")
        if isinstance(state, dict) and "thresholds" not in state:
            state["thresholds"] = torch.full((module.num_classes,), THRESHOLD)
            state["thresholds_tuned"] = torch.tensor(False)

    def empty_labels(self, num_classes: int) -> tuple[int, ...]:
        return (0, num_classes)

    def score(self, probs, labels) -> dict:
        """``mAP`` (macro AP over the classes with positives), ``f1_micro`` and ``f1_macro`` at :data:`THRESHOLD` of sigmoid scores ``probs`` (N, K) against multi-hot ``labels`` (N, K)."""
        from torchmetrics.functional.classification import multilabel_f1_score

        p, y = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
        k = p.shape[1]
        f1 = {a: float(multilabel_f1_score(p, y, k, threshold=THRESHOLD, average=a)) for a in ("micro", "macro")}
        return {
            "mAP": float(np.nanmean(_per_class_ap(probs, labels))),
            "f1_micro": f1["micro"],
            "f1_macro": f1["macro"],
            "confusion": None,
        }

    def fold_fields(self, metrics: dict, labels) -> dict:
        rate = torch.from_numpy(np.asarray(labels, dtype=np.float64).mean(0))  # the share of clips of each class
        return {
            "task": self.name,
            **super().fold_fields({**metrics, "mAP_baseline": label_frequency_baseline(rate)}, labels),
        }

    def report_head(self) -> dict:
        return {"task": self.name, "threshold": THRESHOLD}

    def per_class(self, folds, names):
        aps = [_per_class_ap(probs, labels) for probs, labels in folds]
        per_class = {}
        if aps:
            stacked = np.vstack(aps)
            with np.errstate(invalid="ignore"):
                means = [float(np.nanmean(col)) if np.isfinite(col).any() else None for col in stacked.T]
            per_class = dict(zip(names, means, strict=True))
        lines = []
        if per_class:
            lines += ["", "Per-class AP (final epoch, mean over the folds where the class has positives)", ""]
            lines += ["| class | AP % |", "| --- | --- |"] + [f"| {n} | {pct(a)} |" for n, a in per_class.items()]
        return {"per_class_ap": per_class}, lines, None


def _per_class_ap(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each class (K,) (torchmetrics); NaN for a class without positives."""
    from torchmetrics.functional.classification import multilabel_average_precision

    p, y = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    ap = multilabel_average_precision(p, y, p.shape[1], average=None).double().numpy()
    return np.where(np.asarray(labels).sum(0) > 0, ap, np.nan)
