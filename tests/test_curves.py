"""Training curves: ``curves.png`` in the run folder at the end of fit, from the CSV logger's metrics.csv."""

from __future__ import annotations

from pathlib import Path

from audiocls.cli import main
from audiocls.training.curves import plot_curves, read_epoch_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def test_fit_writes_curves_of_every_epoch(tiny_args, tmp_path, capsys):
    assert main(["fit", *tiny_args, "--trainer.max_epochs=3", "--trainer.limit_train_batches=2"]) == 0
    run = tmp_path / "runs" / "audiocls" / "version_0"
    assert (run / "curves.png").read_bytes()[:8] == PNG
    series = read_epoch_metrics(run / "metrics.csv", ("train/loss_epoch", "val/acc"))
    assert [e for e, _ in series["train/loss_epoch"]] == [0, 1, 2]
    assert [e for e, _ in series["val/acc"]] == [0, 1, 2]
    assert all(0 <= v <= 1 for _, v in series["val/acc"])
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("curves:")]
    assert len(shown) == 1 and Path(shown[0].split(maxsplit=1)[1]).resolve() == run / "curves.png"


def test_no_epoch_metrics_no_plot(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,step,test/acc\n0,1,0.5\n")
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()
