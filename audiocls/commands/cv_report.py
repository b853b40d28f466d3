"""The report of an ``audiocls cv`` run: ``cv_results.json``, ``cv_results.md`` and ``confusion.png``.

Everything is computed from the folds' saved ``predictions.npz`` and ``test_each_epoch.json``: the final
epoch's test-fold headline figure of the task (accuracy, mAP: the honest figure), the best epoch's (the paper's
protocol, labelled as such), the task's other figures (:attr:`~audiocls.models.task.Task.report_columns`: macro
F1; F1 and the label-frequency baseline) and its per-class part (accuracy from the confusion matrix summed over the
folds, shown in ``confusion.png``; AP per class).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from audiocls.files import atomic_write_text
from audiocls.models.task import DEFAULT_TASK, Task, get_task, saved_task
from audiocls.models.task.base import pct
from audiocls.training.curves import plot_confusion

__all__ = ["write_report", "mean_std", "write_json"]

log = logging.getLogger(__name__)

#: files of a fold directory
RESULT, PREDICTIONS, EPOCHS, LOG = "result.json", "predictions.npz", "test_each_epoch.json", "fit.log"


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (:func:`audiocls.files.atomic_write_text`: temporary file, fsync, rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2))


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of ``values``."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(arr):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def _pm(stats: dict) -> str:
    return "n/a" if stats["mean"] is None else f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def write_report(
    out: Path, name: str, cfg_hash: str, results: list[dict], fold_ids: list[int], task: Task | None = None
) -> str:
    """Write the report files under ``out`` and return the Markdown text.

    Args:
        out: the cv directory.
        name: the cv name.
        cfg_hash: the config hash of the folds.
        results: one dict per requested fold (``status`` done / failed / interrupted / not run).
        fold_ids: every fold of the dataset, to say when the report covers only some of them.
        task: the folds' task; ``None`` reads it from the done folds' ``predictions.npz``.
    """
    done = [r for r in results if r["status"] == "done"]
    saved = [np.load(out / f"fold_{r['fold']}" / PREDICTIONS) for r in done]
    task = task or (saved_task(saved[0]) if saved else get_task(DEFAULT_TASK))
    key = task.headline
    final, best = f"final_{key}", f"best_epoch_{key}"
    summary = {k: mean_std([r.get(k) for r in done]) for k in (final, best, *(c for c, _ in task.report_columns))}
    names = [str(n) for n in saved[-1]["class_names"]] if saved else None
    per_class, per_class_lines, total = task.per_class([(d["probs"], d["labels"]) for d in saved], names)
    if total is not None:
        plot_confusion(total, names, out / "confusion.png", f"{name}: summed over {len(done)} fold(s)")
    report = {
        "name": name,
        "config_hash": cfg_hash,
        **task.report_head(),
        "folds": results,
        "summary": summary,
        "all_folds": len(done) == len(fold_ids),
        "wall_s_total": round(sum(r.get("wall_s", 0.0) for r in done), 1),
        "class_names": names,
        **per_class,
    }
    write_json(out / "cv_results.json", report)
    columns = [
        (f"final-epoch {key} %", lambda r: pct(r[final]), _pm(summary[final]), True),
        (f"best-epoch {key} % (paper's protocol)", lambda r: pct(r[best]), _pm(summary[best])),
        ("best epoch", _best_at, ""),
        *((header, lambda r, c=c: pct(r[c]), _pm(summary[c])) for c, header in task.report_columns),
    ]
    lines = _fold_table(task.report_title.format(name=name), cfg_hash, fold_ids, results, report, columns)
    lines += ["", task.report_note, *per_class_lines]
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
