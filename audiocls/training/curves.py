"""Per-epoch training curves as a PNG, from the CSV logger's ``metrics.csv`` (matplotlib, Agg backend).

``AudioCLI`` writes ``curves.png`` in the run folder at the end of every ``fit`` logged with a CSV logger:
the training loss (epoch mean) and the validation accuracy per epoch.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from audiocls.files import atomic_write_bytes

__all__ = ["read_epoch_metrics", "plot_curves"]

log = logging.getLogger(__name__)

#: (metric column, panel title) of the panels of ``curves.png``
PANELS = (("train/loss_epoch", "train loss"), ("val/acc", "val accuracy"))


def read_epoch_metrics(metrics_csv: str | Path, columns: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """``column -> [(epoch, value), ...]`` of the rows of ``metrics.csv`` where that column is set (last per epoch)."""
    out: dict[str, dict[int, float]] = {c: {} for c in columns}
    with Path(metrics_csv).open(newline="") as fh:
        for row in csv.DictReader(fh):
            for c in columns:
                if row.get(c) not in (None, "") and row.get("epoch") not in (None, ""):
                    out[c][int(row["epoch"])] = float(row[c])
    return {c: sorted(v.items()) for c, v in out.items()}


def plot_curves(metrics_csv: str | Path, out: str | Path, *, title: str | None = None) -> Path | None:
    """Write the panels of :data:`PANELS` from ``metrics_csv`` to ``out`` (PNG, atomically); ``None`` if empty."""
    series = read_epoch_metrics(metrics_csv, tuple(c for c, _ in PANELS))
    if not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.5))
    for ax, (column, name) in zip(axes, PANELS, strict=True):
        points = series[column]
        if points:
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3)
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)
