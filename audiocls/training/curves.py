"""Per-epoch training curves as a PNG, from the CSV logger's ``metrics.csv`` (matplotlib, Agg backend).

``AudioCLI`` writes ``curves.png`` in the run folder at the end of every ``fit`` logged with a CSV logger:
the training loss (epoch mean) and the task's monitored validation figure per epoch (``val/acc``, ``val/mAP``:
:attr:`audiocls.models.task.Task.curve_panels`). ``audiocls cv`` draws every fold on the same panels
(:func:`plot_series`), with the held-out fold's headline figure per epoch as a third panel.
``audiocls test`` (and the test after fit) writes the test set's confusion matrix as ``confusion.png``
(:func:`plot_confusion`, also the cv report's summed matrix).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from audiocls.files import atomic_write_bytes
from audiocls.models.task import DEFAULT_TASK, get_task

__all__ = ["read_epoch_metrics", "plot_curves", "plot_series", "plot_confusion", "new_figure"]

log = logging.getLogger(__name__)


def read_epoch_metrics(metrics_csv: str | Path, columns: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """``column -> [(epoch, value), ...]`` of the rows of ``metrics.csv`` where that column is set (last per epoch)."""
    out: dict[str, dict[int, float]] = {c: {} for c in columns}
    with Path(metrics_csv).open(newline="") as fh:
        for row in csv.DictReader(fh):
            for c in columns:
                if row.get(c) not in (None, "") and row.get("epoch") not in (None, ""):
                    out[c][int(row["epoch"])] = float(row[c])
    return {c: sorted(v.items()) for c, v in out.items()}


def plot_curves(
    metrics_csv: str | Path, out: str | Path, *, task: str = DEFAULT_TASK, title: str | None = None
) -> Path | None:
    """Write the curve panels of ``task`` from ``metrics_csv`` to ``out`` (PNG, atomically); ``None`` if empty."""
    panels = get_task(task).curve_panels
    series = read_epoch_metrics(metrics_csv, tuple(c for c, _ in panels))
    return plot_series({"": series}, out, panels, title=title)


def plot_series(
    runs: dict[str, dict[str, list[tuple[int, float]]]],
    out: str | Path,
    panels: tuple[tuple[str, str], ...],
    *,
    title: str | None = None,
) -> Path | None:
    """One panel per ``(key, title)`` of ``panels``, one line per run (``runs: label -> key -> [(epoch, v)]``).

    Written to ``out`` as a PNG, atomically; ``None`` (nothing written) when no run has a point.
    """
    if not any(points for series in runs.values() for points in series.values()):
        return None
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(figsize=(5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        for label, series in runs.items():
            points = series.get(key) or []
            if points:
                ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=label or None)
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(runs) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


def plot_confusion(cm: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Save ``cm`` (C, C) (rows true, columns predicted) as a PNG with the counts written in the cells."""
    n = len(names)
    side = max(5.0, 0.28 * n + 2)
    fig = new_figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=90, fontsize=8 if n <= 20 else 5)
    ax.set_yticks(range(n), names, fontsize=8 if n <= 20 else 5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        top = cm.max() or 1
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="w" if cm[i, j] > top / 2 else "k")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def new_figure(**kwargs):
    """A matplotlib ``Figure`` drawn by the Agg canvas (PNG): no pyplot, so no backend is switched and no figure
    is kept open in pyplot's registry; ``kwargs`` go to ``Figure`` (``figsize``, ``constrained_layout``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
