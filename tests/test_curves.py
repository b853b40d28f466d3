"""Training curves: ``curves.png`` in the run folder at the end of fit, from the CSV logger's metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiocls.cli import main
from audiocls.training.curves import plot_curves, read_epoch_metrics
from tests.test_cli import _accuracy_of

PNG = b"\x89PNG\r\n\x1a\n"


def test_fit_writes_curves_of_every_epoch(tiny_args, tmp_path, capsys):
    assert main(["fit", *tiny_args, "--trainer.max_epochs=3", "--trainer.limit_train_batches=2"]) == 0
    run = tmp_path / "runs" / "audiocls" / "version_0"
    assert (run / "curves.png").read_bytes()[:8] == PNG
    series = read_epoch_metrics(run / "metrics.csv", ("train/loss_epoch", "val/acc"))
    assert [e for e, _ in series["train/loss_epoch"]] == [0, 1, 2]
    assert [e for e, _ in series["val/acc"]] == [0, 1, 2]
    # each epoch's figure counts whole clips; the last one is the final weights' accuracy, recomputed with sklearn
    assert all(abs(v * 4 - round(v * 4)) < 1e-6 for _, v in series["val/acc"])  # 4 validation clips
    assert series["val/acc"][-1][1] == pytest.approx(_accuracy_of(run / "checkpoints" / "last.ckpt", tiny_args, "val"))
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("curves:")]
    assert len(shown) == 1 and Path(shown[0].split(maxsplit=1)[1]).resolve() == run / "curves.png"


def test_no_epoch_metrics_no_plot(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,step,test/acc\n0,1,0.5\n")
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()


def test_cv_plot_draws_every_fold(tmp_path, monkeypatch):
    """The cv folder's cv_curves.png has one line per fold in each panel, the held-out fold's accuracy included."""
    import json

    from matplotlib.axes import Axes

    from audiocls.commands import cv

    for fold, acc in ((1, [0.3, 0.5]), (2, [0.4, 0.6])):
        fold_dir = tmp_path / f"fold_{fold}"
        fold_dir.mkdir()
        rows = [f"{e},{e * 3 + 2},{1.0 - e / 4},,{a}" for e, a in enumerate(acc)]
        (fold_dir / "metrics.csv").write_text("epoch,step,train/loss_epoch,train/acc,val/acc\n" + "\n".join(rows))
        (fold_dir / cv.EPOCHS).write_text(
            json.dumps([{"epoch": e, "step": 1, "acc": a / 2} for e, a in enumerate(acc)])
        )
    drawn = []
    real_plot = Axes.plot
    monkeypatch.setattr(
        Axes,
        "plot",
        lambda ax, x, y, **kw: drawn.append((ax.get_title(), kw["label"], list(y))) or real_plot(ax, x, y, **kw),
    )
    assert cv.plot_folds(tmp_path, [1, 2, 3], "demo") == tmp_path / "cv_curves.png"  # fold 3 has no files yet
    assert (tmp_path / "cv_curves.png").read_bytes()[:8] == PNG
    assert sorted((label, [round(v, 6) for v in y]) for _, label, y in drawn) == [
        ("fold 1", [0.15, 0.25]), ("fold 1", [0.3, 0.5]), ("fold 1", [1.0, 0.75]),
        ("fold 2", [0.2, 0.3]), ("fold 2", [0.4, 0.6]), ("fold 2", [1.0, 0.75]),
    ]  # fmt: skip


def test_test_command_writes_the_confusion_matrix(tiny_args, tmp_path, capsys):
    """The test after fit and ``audiocls test --ckpt_path`` each write ``confusion.png`` in their run folder."""
    assert main(["fit", *tiny_args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]) == 0
    fit_run = tmp_path / "runs" / "audiocls" / "version_0"
    assert (fit_run / "confusion.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    ckpt = fit_run / "checkpoints" / "last.ckpt"
    assert main(["test", *tiny_args, f"--ckpt_path={ckpt}"]) == 0
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("confusion:")]
    assert len(shown) == 1
    written = Path(shown[0].split(maxsplit=1)[1]).resolve()
    assert written.parent != fit_run and written.read_bytes()[:8] == PNG


def test_plots_switch_no_backend_and_leave_no_pyplot_figure(tmp_path, monkeypatch):
    """The library draws on its own Agg canvas: the user's matplotlib backend and pyplot's figures stay as they are."""
    import matplotlib
    import numpy as np
    from matplotlib import pyplot as plt

    from audiocls.training.curves import plot_confusion, plot_series

    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use called by a library function")

    monkeypatch.setattr(matplotlib, "use", refuse)
    open_figures = plt.get_fignums()
    plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png", "t")
    plot_series({"run": {"val/acc": [(0, 0.5), (1, 0.7)]}}, tmp_path / "c.png", (("val/acc", "val acc"),))
    assert (tmp_path / "cm.png").read_bytes()[:4] == (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == open_figures
