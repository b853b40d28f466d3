"""``audiocls cv --launcher submitit``: one job per fold through submitit, tested with its local executor."""

from __future__ import annotations

import json

import pytest

from audiocls.cli import main
from audiocls.commands import cv
from tests.test_cv import _check_fold_against_sklearn, _tiny

submitit = pytest.importorskip("submitit")


@pytest.mark.slow
def test_submitit_runs_one_job_per_fold_and_resumes(tiny_root, tmp_path, monkeypatch):
    submitted = []
    real_submit = submitit.AutoExecutor.submit

    def spy(self, fn, *args, **kwargs):
        submitted.append(args[0])  # the fold command
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(submitit.AutoExecutor, "submit", spy)
    args = ["cv", "--launcher=submitit", "--cluster=local", "--out=cvdir", "--folds=1,2", *_tiny(tiny_root)]
    args += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    assert main(args) == 0
    out = tmp_path / "cvdir"
    assert len(submitted) == 2
    assert sorted(a for c in submitted for a in c if a.startswith("--data.fold=")) == ["--data.fold=1", "--data.fold=2"]
    assert list((out / "submitit").glob("*_submitted.pkl"))  # the jobs went through submitit's executor
    report = json.loads((out / "cv_results.json").read_text())
    assert [f["status"] for f in report["folds"]] == ["done", "done"]
    for f in report["folds"]:
        _check_fold_against_sklearn(out / f"fold_{f['fold']}", f, epochs=1)

    # a complete fold is never submitted again; an incomplete one (its result.json gone) resumes from last.ckpt
    (out / "fold_2" / cv.RESULT).unlink()
    submitted.clear()
    assert main(args) == 0
    assert len(submitted) == 1 and "--data.fold=2" in submitted[0]
    assert f"--ckpt_path={out / 'fold_2' / 'checkpoints' / 'last.ckpt'}" in submitted[0]


def test_a_failing_job_is_reported_with_its_log(tiny_root, tmp_path):
    args = ["cv", "--launcher=submitit", "--cluster=local", "--out=cvdir", "--folds=1", *_tiny(tiny_root)]
    assert main([*args, "--trainer.max_epochs=1", "--model.backbone=no_such_model"]) == 1
    fold = json.loads((tmp_path / "cvdir" / "cv_results.json").read_text())["folds"][0]
    assert fold["status"] == "failed" and fold["log"].endswith("fit.log") and fold["error"]
