"""The report of an ``audiocls cv`` run: ``cv_results.json``, ``cv_results.md`` and ``confusion.png``.

Everything is computed from the folds' saved ``predictions.npz`` and ``test_each_epoch.json``: the final
epoch's test-fold accuracy (the honest figure), the best epoch's (the paper's protocol, labelled as such),
macro F1, the confusion matrix summed over the folds and the per-class accuracy derived from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from audiocls.files import atomic_write_text
from audiocls.models.metrics import confusion_matrix, per_class_accuracy
from audiocls.models.multilabel import THRESHOLD
from audiocls.training.curves import plot_confusion

__all__ = ["write_report", "mean_std", "fold_metrics", "confusion", "write_json", "headline", "label_frequency"]

log = logging.getLogger(__name__)

#: files of a fold directory
RESULT, PREDICTIONS, EPOCHS, LOG = "result.json", "predictions.npz", "test_each_epoch.json", "fit.log"


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (:func:`audiocls.files.atomic_write_text`: temporary file, fsync, rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2))


def confusion(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class.

    :func:`audiocls.models.metrics.confusion_matrix`, the count the classifier's ``test_confusion`` makes.
    """
    return confusion_matrix(labels, pred, num_classes)


def multilabel_fold_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """``mAP``, ``f1_micro``, ``f1_macro`` of sigmoid scores ``probs`` (N, C) against multi-hot ``labels`` (N, C)."""
    from torchmetrics.functional.classification import multilabel_f1_score

    p, y = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    k = p.shape[1]
    ap = per_class_ap(probs, labels)
    f1 = {a: float(multilabel_f1_score(p, y, k, threshold=threshold, average=a)) for a in ("micro", "macro")}
    return {"mAP": float(np.nanmean(ap)), "f1_micro": f1["micro"], "f1_macro": f1["macro"], "confusion": None}


def fold_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and macro F1 (mean over the classes present in ``labels`` or predicted) of ``probs`` (N, C).

    Multi-hot ``labels`` (N, C) (a multi-label run, ``probs`` per-class sigmoids): ``mAP`` (macro AP over the
    classes with positives), ``f1_micro`` and ``f1_macro`` at 0.5, and no confusion matrix.
    """
    if labels.ndim == 2:
        return multilabel_fold_metrics(probs, labels)
    pred = probs.argmax(1)
    cm = confusion(labels, pred, probs.shape[1])
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return {"acc": float(tp.sum() / max(len(labels), 1)), "macro_f1": float(f1[present].mean()), "confusion": cm}


def headline(probs: np.ndarray, labels: np.ndarray) -> tuple[str, float]:
    """The figure a fold is judged by: ``("acc", accuracy)``, or ``("mAP", mAP)`` for multi-hot ``labels``."""
    if not len(labels):
        return ("mAP" if labels.ndim == 2 else "acc"), float("nan")
    if labels.ndim == 2:
        return "mAP", multilabel_fold_metrics(probs, labels)["mAP"]
    return "acc", float((probs.argmax(1) == labels).mean())


def label_frequency(labels: np.ndarray) -> float:
    """The label-frequency baseline of mAP of multi-hot ``labels`` (N, C): the mean positive rate over the classes
    with positives (what a constant score per class reaches)."""
    rate = np.asarray(labels).mean(0)
    return float(rate[rate > 0].mean()) if (rate > 0).any() else float("nan")


def per_class_ap(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each class (C,) (torchmetrics); NaN for a class without positives."""
    from torchmetrics.functional.classification import multilabel_average_precision

    p, y = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    ap = multilabel_average_precision(p, y, p.shape[1], average=None).double().numpy()
    return np.where(np.asarray(labels).sum(0) > 0, ap, np.nan)


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of ``values``."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(arr):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _pm(stats: dict) -> str:
    return "n/a" if stats["mean"] is None else f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def write_report(out: Path, name: str, cfg_hash: str, results: list[dict], fold_ids: list[int]) -> str:
    """Write the report files under ``out`` and return the Markdown text.

    Args:
        out: the cv directory.
        name: the cv name.
        cfg_hash: the config hash of the folds.
        results: one dict per requested fold (``status`` done / failed / interrupted / not run).
        fold_ids: every fold of the dataset, to say when the report covers only some of them.
    """
    done = [r for r in results if r["status"] == "done"]
    if any("final_mAP" in r for r in done):
        return _write_multilabel_report(out, name, cfg_hash, results, fold_ids)
    total, names = None, None
    for r in done:
        data = np.load(out / f"fold_{r['fold']}" / PREDICTIONS)
        names = [str(n) for n in data["class_names"]]
        cm = confusion(data["labels"], data["probs"].argmax(1), len(names))
        total = cm if total is None else total + cm
    summary = {key: mean_std([r[key] for r in done]) for key in ("final_acc", "best_epoch_acc", "macro_f1")}
    per_class = {}
    if total is not None:
        acc = per_class_accuracy(torch.from_numpy(total)).tolist()
        per_class = {n: None if a != a else a for n, a in zip(names, acc, strict=True)}  # None: class absent
        plot_confusion(total, names, out / "confusion.png", f"{name}: summed over {len(done)} fold(s)")
    report = {
        "name": name,
        "config_hash": cfg_hash,
        "folds": results,
        "summary": summary,
        "all_folds": len(done) == len(fold_ids),
        "wall_s_total": round(sum(r.get("wall_s", 0.0) for r in done), 1),
        "class_names": names,
        "per_class_acc": per_class,
        "confusion": total.tolist() if total is not None else None,
    }
    write_json(out / "cv_results.json", report)

    columns = [
        ("final-epoch acc %", lambda r: _pct(r["final_acc"]), _pm(summary["final_acc"]), True),
        ("best-epoch acc % (paper's protocol)", lambda r: _pct(r["best_epoch_acc"]), _pm(summary["best_epoch_acc"])),
        ("best epoch", _best_at, ""),
        ("macro F1 %", lambda r: _pct(r["macro_f1"]), _pm(summary["macro_f1"])),
    ]
    lines = _fold_table(name, cfg_hash, fold_ids, results, report, columns)
    lines += [
        "",
        "Final-epoch accuracy is the honest figure. Best-epoch accuracy picks, per fold, the epoch that scored best "
        "on the held-out test fold itself (the protocol of the paper's code), which flatters it. std is the sample "
        "standard deviation over folds. wall s is per fold process, start-up included; the last row sums them "
        "(folds overlap with --parallel).",
    ]
    if per_class:
        lines += ["", "Per-class accuracy (final epoch, summed over folds), confusion matrix: confusion.png", ""]
        lines += ["| class | acc % |", "| --- | --- |"]
        lines += [f"| {n} | {_pct(a)} |" for n, a in per_class.items()]
    return _finish_report(out, lines, results)


def _write_multilabel_report(out: Path, name: str, cfg_hash: str, results: list[dict], fold_ids: list[int]) -> str:
    """:func:`write_report` of a multi-label cv: mAP (final and best epoch), F1 at the threshold, the label-frequency
    baseline per fold and their mean ± std, and each class's AP (mean over the folds where it has positives)."""
    done = [r for r in results if r["status"] == "done"]
    keys = ("final_mAP", "best_epoch_mAP", "f1_micro", "f1_macro", "mAP_baseline")
    summary = {key: mean_std([r.get(key) for r in done]) for key in keys}
    names, aps = None, []
    for r in done:
        data = np.load(out / f"fold_{r['fold']}" / PREDICTIONS)
        names = [str(n) for n in data["class_names"]]
        aps.append(per_class_ap(data["probs"], data["labels"]))
    per_class = {}
    if aps:
        stacked = np.vstack(aps)
        with np.errstate(invalid="ignore"):
            means = [float(np.nanmean(col)) if np.isfinite(col).any() else None for col in stacked.T]
        per_class = dict(zip(names, means, strict=True))
    report = {
        "name": name,
        "config_hash": cfg_hash,
        "task": "multilabel",
        "threshold": THRESHOLD,
        "folds": results,
        "summary": summary,
        "all_folds": len(done) == len(fold_ids),
        "wall_s_total": round(sum(r.get("wall_s", 0.0) for r in done), 1),
        "class_names": names,
        "per_class_ap": per_class,
    }
    write_json(out / "cv_results.json", report)
    columns = [
        ("final-epoch mAP %", lambda r: _pct(r["final_mAP"]), _pm(summary["final_mAP"]), True),
        ("best-epoch mAP % (paper's protocol)", lambda r: _pct(r["best_epoch_mAP"]), _pm(summary["best_epoch_mAP"])),
        ("best epoch", _best_at, ""),
        (f"F1 micro % @{THRESHOLD}", lambda r: _pct(r["f1_micro"]), _pm(summary["f1_micro"])),
        (f"F1 macro % @{THRESHOLD}", lambda r: _pct(r["f1_macro"]), _pm(summary["f1_macro"])),
        ("label-frequency mAP %", lambda r: _pct(r["mAP_baseline"]), _pm(summary["mAP_baseline"])),
    ]
    lines = _fold_table(f"{name} (multi-label)", cfg_hash, fold_ids, results, report, columns)
    lines += [
        "",
        "Final-epoch mAP (macro average precision over the classes with positives in the fold) is the honest figure; "
        "best-epoch mAP picks the epoch that scored best on the held-out fold itself (the paper's protocol), which "
        f"flatters it. F1 at the fixed threshold {THRESHOLD}. The label-frequency mAP is what a constant score per "
        "class reaches. std is the sample standard deviation over folds.",
    ]
    if per_class:
        lines += ["", "Per-class AP (final epoch, mean over the folds where the class has positives)", ""]
        lines += ["| class | AP % |", "| --- | --- |"] + [f"| {n} | {_pct(a)} |" for n, a in per_class.items()]
    return _finish_report(out, lines, results)


def _best_at(r: dict) -> str:
    return f"{r['best_epoch']} of {r['epochs']}" if r.get("best_epoch") else "n/a"


def _fold_table(title: str, cfg_hash: str, fold_ids, results: list[dict], report: dict, columns) -> list[str]:
    """The report's head and fold table: one row per fold, then the mean ± std row. ``columns`` holds
    ``(header, cell of a done fold, cell of the mean row[, bold])``."""
    done = [r for r in results if r["status"] == "done"]
    lines = [
        f"# cv {title}",
        "",
        f"config hash `{cfg_hash}`; {len(done)} of the dataset's {len(fold_ids)} folds done"
        + ("" if len(done) == len(fold_ids) else ": not a full cv, the means cover these folds only"),
        "",
        "| fold | " + " | ".join(c[0] for c in columns) + " | wall s | status |",
        "| --- " * (len(columns) + 3) + "|",
    ]
    for r in results:
        if r["status"] == "done":
            cells = [c[1](r) for c in columns] + [
                f"{r['wall_s']:.0f}",
                f"done{' (resumed)' if r.get('resumed') else ''}",
            ]
        else:
            cells = [""] * (len(columns) + 1) + [r["status"] + (f": {r['log']}" if r.get("log") else "")]
        lines.append(_row([str(r["fold"]), *cells]))
    means = [f"**{c[2]}**" if len(c) > 3 and c[3] else c[2] for c in columns]
    means += [f"{report['wall_s_total']:.0f}", f"{len(done)} fold(s)"]
    lines.append(_row(["**mean ± std**", *means]))
    return lines


def _row(cells: list[str]) -> str:
    """A Markdown table row; an empty cell is ``| |``."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def _finish_report(out: Path, lines: list[str], results: list[dict]) -> str:
    """Append the failed folds to the report's lines, write ``cv_results.md`` atomically and return its text."""
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed folds:", ""] + [
            f"- fold {r['fold']}: {r.get('error', '')} (log: {r['log']})" for r in failed
        ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "cv_results.md", text)
    log.info("report written to %s", out / "cv_results.md")
    return text
