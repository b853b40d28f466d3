"""``audiocls ensemble``: per-fold averaging of saved softmax outputs, checked against a hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiocls.cli import main
from audiocls.commands import cv


def _fake_run(path: Path, folds: dict[int, tuple[np.ndarray, np.ndarray]], names=("a", "b", "c")) -> Path:
    """A cv directory as ``audiocls cv`` leaves it, with the given (probs, labels) per fold."""
    path.mkdir(parents=True)
    (path / "cv.json").write_text(json.dumps({"config_hash": path.name}))
    for fold, (probs, labels) in folds.items():
        d = path / f"fold_{fold}"
        d.mkdir()
        files = np.array([f"{fold}-{i}.wav" for i in range(len(labels))])
        np.savez(d / cv.PREDICTIONS, probs=probs, labels=labels, files=files, class_names=np.array(names))
        (d / cv.RESULT).write_text(json.dumps({"fold": fold, "status": "done", "config_hash": path.name}))
    return path


def _hand(members: list[np.ndarray], labels: np.ndarray) -> float:
    return float((np.mean(members, axis=0).argmax(1) == labels).mean())


def test_ensemble_matches_hand_computation(tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = {1: rng.integers(0, 3, 40), 2: rng.integers(0, 3, 40), 3: rng.integers(0, 3, 40)}
    probs_a = {k: rng.dirichlet(np.ones(3), 40) for k in labels}
    probs_b = {k: rng.dirichlet(np.ones(3), 40) for k in labels}
    a = _fake_run(tmp_path / "A", {k: (probs_a[k], labels[k]) for k in (1, 2, 3)})
    b = _fake_run(tmp_path / "B", {k: (probs_b[k], labels[k]) for k in (1, 2)})  # fold 3 missing in B
    assert main(["ensemble", "--runs", str(a), str(b), "--out", "ens"]) == 0
    report = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [1, 2] and report["skipped_folds"] == [3]
    for f in report["folds"]:
        k = f["fold"]
        assert f["A"]["acc"] == pytest.approx(_hand([probs_a[k]], labels[k]))
        assert f["B"]["acc"] == pytest.approx(_hand([probs_b[k]], labels[k]))
        assert f["ensemble"]["acc"] == pytest.approx(_hand([probs_a[k], probs_b[k]], labels[k]))
    per_fold = [_hand([probs_a[k], probs_b[k]], labels[k]) for k in (1, 2)]
    assert report["summary"]["ensemble"]["acc"]["mean"] == pytest.approx(np.mean(per_fold))
    assert report["summary"]["ensemble"]["acc"]["std"] == pytest.approx(np.std(per_fold, ddof=1))
    out = capsys.readouterr().out
    assert f"{100 * np.mean(per_fold):.2f}" in out and "folds [3]" in out


def test_runs_tested_on_other_clips_are_refused(tmp_path, capsys):
    labels = np.array([0, 1, 2, 0])
    probs = np.eye(3)[labels]
    a = _fake_run(tmp_path / "A", {1: (probs, labels)})
    b = _fake_run(tmp_path / "B", {1: (probs, labels[::-1].copy())})
    assert main(["ensemble", "--runs", str(a), str(b)]) == 2
    assert "different clips" in capsys.readouterr().err


def test_not_a_cv_dir_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    a = _fake_run(tmp_path / "A", {1: (np.eye(3), np.arange(3))})
    assert main(["ensemble", "--runs", str(a), str(tmp_path / "empty")]) == 2
    assert "no cv.json" in capsys.readouterr().err
