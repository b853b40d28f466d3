"""``audiocls cv`` and ``audiocls ensemble`` on multi-label runs: sigmoid outputs and multi-hot targets saved per
fold, mAP / F1 reports checked against sklearn on the saved predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiocls.cli import main
from audiocls.commands import cv
from audiocls.commands.cv_report import write_report
from tests.test_multilabel import POLY, _fit_args, split_scores


def _sk_map(probs: np.ndarray, labels: np.ndarray) -> float:
    """sklearn's macro AP over the classes with positives."""
    from sklearn.metrics import average_precision_score

    present = labels.sum(0) > 0
    return float(average_precision_score(labels[:, present], probs[:, present], average="macro"))


def _sk_f1(probs: np.ndarray, labels: np.ndarray, average: str) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, probs >= 0.5, average=average, zero_division=0))


def _fake_fold(d: Path, rng, n: int = 40, k: int = 4, signal: float = 1.0) -> None:
    labels = (rng.random((n, k)) < 0.35).astype(np.int64)
    labels[:, 3] = 0  # a class without positives in this fold: left out of mAP, as sklearn would
    probs = 1 / (1 + np.exp(-(signal * (2 * labels - 1) + rng.standard_normal((n, k)))))
    d.mkdir(parents=True)
    files = np.array([f"{d.name}-{i}.wav" for i in range(n)])
    np.savez(d / cv.PREDICTIONS, probs=probs, labels=labels, files=files, class_names=np.array(list("abcd")))
    (d / cv.EPOCHS).write_text(json.dumps([{"epoch": 0, "step": 1, "mAP": 0.99}, {"epoch": 1, "step": 2, "mAP": 0.2}]))


def _fake_cv(out: Path, seed: int, signal: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    (out).mkdir(parents=True)
    (out / "cv.json").write_text(json.dumps({"config_hash": "h"}))
    results = []
    for fold in (1, 2, 3):
        _fake_fold(out / f"fold_{fold}", np.random.default_rng(fold), signal=signal)  # same labels in every run
        data = np.load(out / f"fold_{fold}" / cv.PREDICTIONS)
        probs = 1 / (1 + np.exp(-(signal * (2 * data["labels"] - 1) + rng.standard_normal(data["probs"].shape))))
        np.savez(out / f"fold_{fold}" / cv.PREDICTIONS, **{**dict(data), "probs": probs})
        results.append(cv.collect(out / f"fold_{fold}", fold, "h", 1.0, False))
    write_report(out, out.name, "h", results, [1, 2, 3])
    return out


def test_multilabel_cv_report_matches_sklearn_on_the_saved_predictions(tmp_path):
    out = _fake_cv(tmp_path / "A", seed=0)
    report = json.loads((out / "cv_results.json").read_text())
    assert report["task"] == "multilabel" and "confusion" not in report
    maps = []
    for f in report["folds"]:
        data = np.load(out / f"fold_{f['fold']}" / cv.PREDICTIONS)
        probs, labels = data["probs"], data["labels"]
        maps.append(_sk_map(probs, labels))
        assert f["final_mAP"] == pytest.approx(maps[-1], abs=1e-6)
        assert f["f1_micro"] == pytest.approx(_sk_f1(probs, labels, "micro"), abs=1e-6)
        assert f["best_epoch_mAP"] == 0.99 and f["best_epoch"] == 1 and "final_acc" not in f
        assert f["mAP_baseline"] == pytest.approx(labels.mean(0)[:3].mean())
    summary = report["summary"]["final_mAP"]
    assert summary["mean"] == pytest.approx(np.mean(maps)) and summary["std"] == pytest.approx(np.std(maps, ddof=1))
    assert report["per_class_ap"]["d"] is None  # never a positive
    md = (out / "cv_results.md").read_text()
    assert f"{100 * np.mean(maps):.2f} ± {100 * np.std(maps, ddof=1):.2f}" in md and "F1 macro" in md


def test_multilabel_ensemble_averages_sigmoid_outputs(tmp_path, capsys):
    a, b = _fake_cv(tmp_path / "A", seed=0, signal=0.5), _fake_cv(tmp_path / "B", seed=1, signal=0.5)
    assert main(["ensemble", "--runs", str(a), str(b), "--out", "ens"]) == 0
    report = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert report["task"] == "multilabel"
    per_fold = []
    for f in report["folds"]:
        data = [np.load(r / f"fold_{f['fold']}" / cv.PREDICTIONS) for r in (a, b)]
        mean, labels = (data[0]["probs"] + data[1]["probs"]) / 2, data[0]["labels"]
        assert f["A"]["mAP"] == pytest.approx(_sk_map(data[0]["probs"], labels), abs=1e-6)
        assert f["ensemble"]["mAP"] == pytest.approx(_sk_map(mean, labels), abs=1e-6)
        assert f["ensemble"]["f1_macro"] == pytest.approx(_sk_f1(mean[:, :3], labels[:, :3], "macro") * 3 / 4, abs=1e-6)
        per_fold.append(f["ensemble"]["mAP"])
    assert report["summary"]["ensemble"]["mAP"]["mean"] == pytest.approx(np.mean(per_fold))
    assert np.mean(per_fold) > report["summary"]["A"]["mAP"]["mean"]  # two noisy members: averaging helps
    assert "mAP" in capsys.readouterr().out


def test_ensemble_of_a_multilabel_and_a_single_label_run_is_refused(tmp_path, capsys):
    from tests.test_ensemble import _fake_run

    a = _fake_cv(tmp_path / "A", seed=0)
    labels = np.zeros(40, dtype=np.int64)
    b = _fake_run(tmp_path / "B", {1: (np.eye(4)[labels], labels)}, names=list("abcd"))
    assert main(["ensemble", "--runs", str(a), str(b)]) == 2
    assert "multi-label" in capsys.readouterr().err


def test_callback_saves_sigmoid_outputs_and_multi_hot_targets(tmp_path):
    """The fold callback on a multi-label fit: per-epoch mAP, predictions.npz, and the CLI's test/mAP agree."""
    out = tmp_path / "fold"
    callback = {"class_path": "audiocls.commands.cv.TestFoldEachEpoch", "init_args": {"dirpath": str(out)}}
    assert (
        main(
            _fit_args(
                tmp_path / "poly", 2, [f"--trainer.callbacks+={json.dumps(callback)}", "--data.validate_test_fold=true"]
            )
        )
        == 0
    )
    data = np.load(out / cv.PREDICTIONS)
    probs, labels = data["probs"], data["labels"]
    assert probs.shape == labels.shape == (12, 4) and set(np.unique(labels)) <= {0, 1} and labels.sum(1).min() >= 1
    assert not np.allclose(probs.sum(1), 1)  # not a softmax
    # the saved scores are the sigmoids of the final weights' logits on the test fold, the targets its tags: as
    # computed here from the last checkpoint and the datamodule's batches
    want_probs, want_labels = split_scores("ckpt/last.ckpt", tmp_path / "poly")
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(probs, want_probs, atol=1e-5)
    history = json.loads((out / cv.EPOCHS).read_text())
    assert [h["epoch"] for h in history] == [0, 1] and "acc" not in history[-1]
    assert history[-1]["mAP"] == pytest.approx(_sk_map(probs, labels), abs=1e-5)
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["test/mAP"] == pytest.approx(_sk_map(probs, labels), abs=1e-5)


@pytest.mark.slow
def test_multilabel_cv_runs_every_fold_and_reports_map(tmp_path, cache_root):
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache_root), WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    fit = _fit_args(tmp_path / "poly", 1)[1:]
    fit = [a for a in fit if not a.startswith(("--checkpoint.dirpath", "--trainer.logger"))]
    cmd = [sys.executable, "-m", "audiocls.cli", "cv", "--out", str(tmp_path / "cv"), "--folds", "1,2", *fit]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "cv" / "cv_results.json").read_text())
    for f in report["folds"]:
        data = np.load(tmp_path / "cv" / f"fold_{f['fold']}" / cv.PREDICTIONS)
        assert f["final_mAP"] == pytest.approx(_sk_map(data["probs"], data["labels"]), abs=1e-5)
        assert f["test_metrics"]["test/mAP"] == pytest.approx(f["final_mAP"], abs=1e-5)
    assert "mAP" in proc.stdout and "mean ± std" in proc.stdout
    assert POLY["max_sources"] == 3
