"""``cv_curves.png``: every fold's logged curves and its held-out fold figure per epoch on the same panels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from audiocls.commands.cv_report import EPOCHS
from audiocls.models.task import DEFAULT_TASK, get_task
from audiocls.training.curves import plot_series, read_epoch_metrics

__all__ = ["cv_panels", "plot_folds"]

log = logging.getLogger(__name__)


def cv_panels(task: str = DEFAULT_TASK) -> tuple[tuple[str, str], ...]:
    """The panels of ``cv_curves.png``: the task's curve panels and the held-out fold's headline figure."""
    t = get_task(task)
    return (*t.curve_panels, ("test_fold", f"held-out fold {t.headline}"))


def plot_folds(out: Path, folds: list[int], name: str, task: str = DEFAULT_TASK) -> Path | None:
    """``cv_curves.png`` in the cv folder: every fold's train loss, validation figure and held-out fold figure per
    epoch (the panels of :func:`cv_panels`)."""
    panels, headline = cv_panels(task), get_task(task).headline
    runs = {}
    for fold in folds:
        fold_dir = out / f"fold_{fold}"
        metrics_csv = fold_dir / "metrics.csv"
        series = read_epoch_metrics(metrics_csv, tuple(c for c, _ in panels[:-1])) if metrics_csv.is_file() else {}
        if (fold_dir / EPOCHS).is_file():
            history = json.loads((fold_dir / EPOCHS).read_text())
            series["test_fold"] = [(h["epoch"], h[headline]) for h in history if headline in h]
        if series:
            runs[f"fold {fold}"] = series
    written = plot_series(runs, out / "cv_curves.png", panels, title=name)
    if written:
        log.info("fold curves written to %s", written)
    return written
