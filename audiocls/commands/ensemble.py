"""``audiocls ensemble``: average, per fold, the softmax outputs of several ``audiocls cv`` runs.

    audiocls ensemble --runs runs/densenet-cv runs/resnet-cv [--out runs/ensemble]

Each cv fold saved its final model's softmax outputs on the held-out fold (``fold_K/predictions.npz``), so the
ensemble needs no model: for every fold complete in all runs it averages the members' probabilities and takes
the arg-max. The report (``ensemble.json``, ``ensemble.md``, printed) gives each member's and the ensemble's
accuracy and macro F1 per fold and their mean ± std over folds; the figures are the task's
(:attr:`~audiocls.models.task.Task.ensemble_keys`, the task read from the saved predictions): multi-label runs
average the sigmoid outputs and report mAP and F1 micro/macro at the threshold instead. The paper's 92.89 % on
ESC-50 is such an ensemble (of best-epoch models; these are final-epoch ones).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from audiocls.commands.cv_report import PREDICTIONS, RESULT, mean_std, write_json
from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError, DataError
from audiocls.files import atomic_write_text
from audiocls.models.task import get_task, saved_task

__all__ = ["main", "load_run", "ensemble_folds"]

log = logging.getLogger(__name__)


def load_run(run: Path) -> dict[int, dict]:
    """The complete folds of a cv directory: ``{fold: {"probs", "labels", "files", "class_names", "task"}}``."""
    if not (run / "cv.json").is_file():
        raise DataError(f"{run} is not an 'audiocls cv' directory (no cv.json); pass the --out of a cv run")
    folds = {}
    for fold_dir in sorted(run.glob("fold_*")):
        try:
            result = json.loads((fold_dir / RESULT).read_text())
            data = np.load(fold_dir / PREDICTIONS)
        except (OSError, ValueError):
            continue
        if result.get("status") != "done":
            continue
        folds[int(result["fold"])] = {k: data[k] for k in ("probs", "labels", "files", "class_names")}
        folds[int(result["fold"])]["task"] = saved_task(data)
    if not folds:
        raise DataError(f"{run} has no complete fold; run 'audiocls cv' there to completion first")
    return folds


def _check_same(fold: int, runs: list[Path], members: list[dict]) -> None:
    first = members[0]
    for run, m in zip(runs[1:], members[1:], strict=True):
        if m["task"].name != first["task"].name:
            raise DataError(
                f"{run} and {runs[0]}: one is a {m['task'].description} cv run and the other a {first['task'].description} one; "
                "ensemble runs of the same task"
            )
        if list(m["class_names"]) != list(first["class_names"]):
            raise DataError(f"{run} and {runs[0]} have different classes; an ensemble needs the same dataset")
        same_files = len(m["files"]) == 0 or len(first["files"]) == 0 or np.array_equal(m["files"], first["files"])
        if not (same_files and np.array_equal(m["labels"], first["labels"])):
            raise DataError(
                f"fold {fold}: {run} and {runs[0]} were tested on different clips; an ensemble needs the same "
                "dataset, folds and clip order"
            )


def ensemble_folds(runs: list[Path]) -> dict:
    """Per-fold and mean figures of the runs' task (accuracy / macro F1; multi-label: mAP and F1 micro/macro) of
    each run and of the average of their scores (softmax or sigmoid outputs)."""
    loaded = [load_run(r) for r in runs]
    common = sorted(set.intersection(*(set(f) for f in loaded)))
    skipped = sorted(set.union(*(set(f) for f in loaded)) - set(common))
    if not common:
        raise DataError(f"the runs {[str(r) for r in runs]} have no complete fold in common")
    if skipped:
        log.warning("folds %s are not complete in every run and are left out", skipped)
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    folds = []
    for fold in common:
        members = [f[fold] for f in loaded]
        _check_same(fold, runs, members)
        probs = np.mean([m["probs"] for m in members], axis=0)
        row = {"fold": fold, "num_test": len(members[0]["labels"])}
        task = members[0]["task"]
        for name, m in zip(names, members, strict=True):
            row[name] = {k: v for k, v in task.score(m["probs"], m["labels"]).items() if k != "confusion"}
        row["ensemble"] = {k: v for k, v in task.score(probs, members[0]["labels"]).items() if k != "confusion"}
        folds.append(row)
    columns = [*names, "ensemble"]
    task = loaded[0][common[0]]["task"]
    summary = {c: {k: mean_std([f[c][k] for f in folds]) for k in task.ensemble_keys} for c in columns}
    return {
        "task": task.name,
        "runs": [str(r) for r in runs],
        "members": names,
        "folds": folds,
        "skipped_folds": skipped,
        "summary": summary,
    }


def _markdown(report: dict) -> str:
    columns, summary = [*report["members"], "ensemble"], report["summary"]
    task = get_task(report["task"])
    key, caption, rows = task.headline, task.ensemble_caption, task.ensemble_rows
    lines = [
        "# ensemble of " + ", ".join(report["members"]),
        "",
        caption,
        "",
        "| fold | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for f in report["folds"]:
        lines.append(f"| {f['fold']} | " + " | ".join(f"{100 * f[c][key]:.2f}" for c in columns) + " |")
    for metric, label, with_std in rows:
        stats = [summary[c][metric] for c in columns]
        cells = [f"{100 * s['mean']:.2f}" + (f" ± {100 * s['std']:.2f}" if with_std else "") for s in stats]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if report["skipped_folds"]:
        lines += ["", f"Left out (not complete in every run): folds {report['skipped_folds']}"]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "ensemble",
        "Average the softmax (multi-label: sigmoid) outputs of several 'audiocls cv' runs per fold and report "
        "accuracy (multi-label: mAP).",
    )
    p.add_argument("--runs", nargs="+", required=True, help="cv directories (the --out of 'audiocls cv')")
    p.add_argument("--out", default=None, help="report folder (default: runs/ensemble-<run names>)")
    return p


def main(argv: list[str]) -> int:
    """``audiocls ensemble``; returns 0."""
    opts = build_parser().parse_args(argv)
    runs = [Path(r).expanduser().resolve() for r in opts.runs]
    if len(runs) < 2:
        raise ConfigError("--runs needs at least two cv directories to ensemble")
    report = ensemble_folds(runs)
    out = Path(opts.out or f"runs/ensemble-{'+'.join(r.name for r in runs)}").expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ensemble.json", report)
    text = _markdown(report)
    atomic_write_text(out / "ensemble.md", text)
    print(text + f"\nwritten to {out}")
    return 0
