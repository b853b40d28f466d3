"""The callback presets under configs/callbacks/: weight averaging and early stopping, through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from audiocls.cli import main

CALLBACKS = Path(__file__).resolve().parents[1] / "configs" / "callbacks"


def _run_dir(root: Path) -> Path:
    return root / "runs" / "audiocls" / "version_0"


def _test_metrics(tiny_args: list[str], ckpt: Path, root: Path) -> dict[str, float]:
    """``audiocls test`` of a checkpoint without any callback preset: the metrics.json of that run."""
    assert main(["test", *tiny_args, f"--ckpt_path={ckpt}"]) == 0
    newest = max(root.glob("runs/audiocls/version_*/metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(newest.read_text())


def test_ema_weights_are_what_is_saved_and_tested(tiny_args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*tiny_args, "--trainer.max_epochs=2", "--trainer.limit_train_batches=3"]
    assert main(["fit", "--config", str(CALLBACKS / "ema.yaml"), *args]) == 0
    run = _run_dir(tmp_path)
    fit_metrics = json.loads((run / "metrics.json").read_text())
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)

    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    moved = [k for k in averaged if averaged[k].is_floating_point() and not torch.equal(averaged[k], raw[k])]
    assert moved, "the checkpoint's averaged weights equal the raw ones: nothing was averaged"

    # the final test of `fit` ran on the weights the checkpoint holds (the averaged ones) ...
    saved = _test_metrics(tiny_args, last, tmp_path)
    assert saved["test/loss"] == pytest.approx(fit_metrics["test/loss"], abs=1e-6)
    # ... and not on the raw weights, which score differently
    raw_ckpt = tmp_path / "raw.ckpt"
    torch.save({**ckpt, "state_dict": raw}, raw_ckpt)
    assert _test_metrics(tiny_args, raw_ckpt, tmp_path)["test/loss"] != pytest.approx(saved["test/loss"], abs=1e-6)


def test_early_stopping_stops_when_val_acc_stalls(tiny_args, tmp_path, monkeypatch):
    """A learning rate of 0 keeps val/acc flat, so fit stops after 1 + patience epochs, long before max_epochs."""
    monkeypatch.chdir(tmp_path)
    args = [
        *tiny_args,
        "--config",
        str(CALLBACKS / "early_stopping.yaml"),
        "--trainer.callbacks.init_args.patience=2",
        "--trainer.max_epochs=20",
        "--trainer.limit_train_batches=1",
        "--model.optimizer=torch.optim.SGD",
        "--model.optimizer.lr=0.0",
        "--test_after_fit=false",
    ]
    assert main(["fit", *args]) == 0
    rows = list(csv.DictReader((_run_dir(tmp_path) / "metrics.csv").open()))
    epochs = sorted({int(r["epoch"]) for r in rows if r.get("val/acc")})
    assert epochs == [0, 1, 2]  # epoch 0 sets the best, epochs 1 and 2 do not improve on it: stop
    # last.ckpt is the final epoch's even though val/acc did not improve after epoch 0 (Lightning alone keeps epoch 0)
    checkpoints = _run_dir(tmp_path) / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    assert torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0


def test_early_stopping_without_a_validation_split_is_one_line(tiny_args, tmp_path, monkeypatch, capsys):
    """Lightning would end the first epoch in a RuntimeError traceback ("conditioned on metric val/acc which is not
    available"); the split decides it before training, in one line naming the settings."""
    monkeypatch.chdir(tmp_path)
    args = [*tiny_args, "--config", str(CALLBACKS / "early_stopping.yaml"), "--data.val_fraction=0"]
    assert main(["fit", *args, "--trainer.max_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "early stopping watches val/acc, but there is no validation split (data.val_fraction=0.0" in err
    assert "Traceback" not in err and "RuntimeError" not in err
