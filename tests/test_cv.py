"""``audiocls cv``: the per-epoch test-fold callback, metrics, config hashing and refusal (fast), and a real
2-fold cv on the tiny set, interrupted after fold 1 and resumed (slow, subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiocls.cli import main
from audiocls.commands import cv
from audiocls.commands.cv_launch import fold_command
from audiocls.models.task import get_task
from tests.conftest import TINY_FRONTEND


def _tiny(root: Path) -> list[str]:
    """The tiny-set fit overrides of conftest's ``tiny_args``, for fixtures wider than one test."""
    return [
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--model.backbone=test_resnet",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        f"--data.root={root}",
        "--data.num_classes=4",
        "--data.clips_per_fold=3",
        "--data.seconds=1.0",
        "--data.sample_rate=8000",
        "--data.batch_size=4",
        "--data.num_workers=0",
        f"--data.frontend={json.dumps(TINY_FRONTEND)}",
    ]


# --- fast ---------------------------------------------------------------------------------------------------------
def test_fold_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 50)  # class 4 of 5 never occurs: macro F1 must leave it out, as sklearn does
    probs = rng.random((50, 5))
    pred = probs.argmax(1)
    m = get_task("multiclass").score(probs, labels)
    assert m["acc"] == pytest.approx(accuracy_score(labels, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["confusion"].sum() == 50 and np.trace(m["confusion"]) == (pred == labels).sum()


def test_the_report_and_the_model_count_the_confusion_matrix_the_same_way():
    """cv's report (saved predictions) and AudioClassifier's test_confusion (its test step) agree with sklearn."""
    import torch
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import recall_score

    from audiocls.models.classifier import AudioClassifier

    rng = np.random.default_rng(1)
    labels = np.sort(rng.integers(0, 5, 40))  # class-sorted, class 5 of 6 absent
    logits = torch.from_numpy(rng.standard_normal((40, 6)).astype(np.float32))
    pred = logits.argmax(1).numpy()
    expected = sk_confusion(labels, pred, labels=range(6))
    np.testing.assert_array_equal(get_task("multiclass").score(logits.numpy(), labels)["confusion"], expected)
    model = AudioClassifier(backbone="test_resnet", num_classes=6)
    model.on_test_epoch_start()
    for i in range(0, 40, 16):  # the model's own metric state, batch by batch
        model.test_confmat.update(logits[i : i + 16], torch.from_numpy(labels[i : i + 16]))
    model.log_dict = model.log = lambda *a, **k: None  # no trainer attached
    model.on_test_epoch_end()
    np.testing.assert_array_equal(model.test_confusion.numpy(), expected)
    recall = recall_score(labels, pred, labels=range(5), average=None, zero_division=0)
    np.testing.assert_allclose(model.test_per_class_acc[:5].numpy(), recall, rtol=1e-6)
    assert torch.isnan(model.test_per_class_acc[5])


def test_callback_records_each_epoch_and_final_predictions(tiny_args, tmp_path):
    """The last epoch's test-fold accuracy, the saved predictions and the CLI's test/acc are the same weights."""
    out = tmp_path / "fold"
    callback = {"class_path": "audiocls.commands.cv.TestFoldEachEpoch", "init_args": {"dirpath": str(out)}}
    assert (
        main(
            [
                "fit",
                *tiny_args,
                "--trainer.max_epochs=2",
                "--trainer.limit_train_batches=3",
                "--data.validate_test_fold=true",
                f"--trainer.callbacks+={json.dumps(callback)}",
            ]
        )
        == 0
    )
    history = json.loads((out / cv.EPOCHS).read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    data = np.load(out / cv.PREDICTIONS)
    assert data["probs"].shape == (12, 4) and np.allclose(data["probs"].sum(1), 1, atol=1e-5)
    assert sorted(np.bincount(data["labels"])) == [3, 3, 3, 3]  # fold 1 of the tiny set: 3 clips of 4 classes
    assert all(Path(f).name.startswith("1-") for f in data["files"])  # the held-out fold's files, in order
    assert list(data["class_names"]) == ["tone", "chirp_up", "chirp_down", "noise_band"]
    final = float((data["probs"].argmax(1) == data["labels"]).mean())
    assert history[-1]["acc"] == pytest.approx(final)
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["test/acc"] == pytest.approx(final)


def test_config_hash_ignores_where_a_run_lives(tiny_root):
    base = cv.resolve_config(_tiny(tiny_root))
    moved = cv.resolve_config(
        [*_tiny(tiny_root), "--data.fold=3", "--data.num_workers=1", "--trainer.logger.init_args.save_dir=elsewhere"]
    )
    other = cv.resolve_config([*_tiny(tiny_root), "--model.optimizer.init_args.lr=0.5"])
    assert cv.config_hash(base) == cv.config_hash(moved)
    assert cv.config_hash(base) != cv.config_hash(other)


def test_cv_dir_of_another_config_is_refused(tiny_root, tmp_path, monkeypatch, capsys):
    """The second command changes the learning rate: refused before any fold runs, naming the setting."""
    monkeypatch.setattr(cv, "run_folds", lambda *a, **k: {})  # no fold processes: only the bookkeeping
    assert main(["cv", "--out", "cvdir", "--folds", "1", *_tiny(tiny_root)]) == 1  # fold 1 "not run"
    assert json.loads((tmp_path / "cvdir" / "cv_results.json").read_text())["folds"][0]["status"] == "not run"
    capsys.readouterr()
    code = main(["cv", "--out", "cvdir", "--folds", "1", *_tiny(tiny_root), "--model.optimizer.init_args.lr=0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "another config" in err and "model.optimizer.init_args.lr" in err and "--out" in err


def test_unknown_fold_is_refused(tiny_root, capsys):
    assert main(["cv", "--folds", "1,9", *_tiny(tiny_root)]) == 2
    assert "choose among [1, 2, 3, 4, 5]" in capsys.readouterr().err


def test_fold_command_resumes_from_last_checkpoint(tmp_path):
    cfg = {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {}}}}
    first = fold_command(cfg, tmp_path, "x", 2, devices_one=False)
    assert "--data.fold=2" in first and not any(a.startswith("--ckpt_path") for a in first)
    assert "--trainer.logger.init_args.version=fold_2" in first
    (tmp_path / "fold_2" / "checkpoints").mkdir(parents=True)
    (tmp_path / "fold_2" / "checkpoints" / "last.ckpt").write_bytes(b"")
    again = fold_command(cfg, tmp_path, "x", 2, devices_one=False)
    assert f"--ckpt_path={tmp_path / 'fold_2' / 'checkpoints' / 'last.ckpt'}" in again


def test_wandb_folds_are_grouped_by_cv_name(tmp_path):
    cfg = {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {}}}}
    cmd = fold_command(cfg, tmp_path, "esc50-cv", 3, devices_one=True)
    assert "--trainer.logger.dict_kwargs.group=esc50-cv" in cmd and "--trainer.devices=1" in cmd
    assert "--trainer.logger.init_args.name=esc50-cv-fold3" in cmd


# --- slow: real folds in subprocesses -----------------------------------------------------------------------------
def _check_fold_against_sklearn(fold_dir: Path, result: dict, epochs: int) -> None:
    """A fold's report figures recomputed with sklearn from its ``predictions.npz`` and per-epoch history."""
    from sklearn.metrics import accuracy_score, f1_score

    data = np.load(fold_dir / cv.PREDICTIONS)
    labels, pred = data["labels"], data["probs"].argmax(1)
    assert result["final_acc"] == pytest.approx(accuracy_score(labels, pred))
    seen = sorted(set(labels.tolist()) | set(pred.tolist()))  # the report averages over classes present or predicted
    assert result["macro_f1"] == pytest.approx(f1_score(labels, pred, labels=seen, average="macro"))
    assert result["test_metrics"]["test/acc"] == pytest.approx(result["final_acc"])  # the CLI's own test, same weights
    history = json.loads((fold_dir / cv.EPOCHS).read_text())
    assert [h["epoch"] for h in history] == list(range(epochs)) and result["epochs"] == epochs
    assert history[-1]["acc"] == pytest.approx(result["final_acc"])  # the last epoch's held-out figure: final weights
    best = max(history, key=lambda h: h["acc"])
    assert result["best_epoch_acc"] == best["acc"] and result["best_epoch"] == best["epoch"] + 1


@pytest.mark.slow
def test_one_real_cv_fold_and_an_ensemble_match_sklearn(tiny_root, tmp_path):
    """``audiocls cv`` runs a real fold (a subprocess, 2 short epochs) twice with two seeds, then ``ensemble``:
    every figure of both reports is sklearn's on the saved predictions."""
    from sklearn.metrics import accuracy_score

    quick = ["--folds=1", *_tiny(tiny_root), "--trainer.max_epochs=2", "--trainer.limit_train_batches=2"]
    assert main(["cv", "--out=A", *quick]) == 0
    assert main(["cv", "--out=B", *quick, "--seed_everything=1"]) == 0
    for run in ("A", "B"):
        report = json.loads((tmp_path / run / "cv_results.json").read_text())
        (fold,) = report["folds"]
        _check_fold_against_sklearn(tmp_path / run / "fold_1", fold, epochs=2)
        assert report["summary"]["final_acc"]["mean"] == pytest.approx(fold["final_acc"])
        assert f"{100 * fold['final_acc']:.2f}" in (tmp_path / run / "cv_results.md").read_text()
    assert main(["ensemble", "--runs", "A", "B", "--out", "ens"]) == 0
    (fold,) = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["folds"]
    data = [np.load(tmp_path / run / "fold_1" / cv.PREDICTIONS) for run in ("A", "B")]
    assert not np.allclose(data[0]["probs"], data[1]["probs"])  # two different models
    labels = data[0]["labels"]
    assert fold["A"]["acc"] == pytest.approx(accuracy_score(labels, data[0]["probs"].argmax(1)))
    assert fold["B"]["acc"] == pytest.approx(accuracy_score(labels, data[1]["probs"].argmax(1)))
    mean = (data[0]["probs"] + data[1]["probs"]) / 2
    assert fold["ensemble"]["acc"] == pytest.approx(accuracy_score(labels, mean.argmax(1)))


def _cv_cmd(out: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audiocls.cli", "cv", "--out", str(out), "--folds", "1,2", *_tiny(root), *extra]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    }


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory, tiny_root, cache_root):
    """A 2-fold cv, Ctrl-C (SIGINT to the driver) once fold 1 is complete, then the same command again."""
    work = tmp_path_factory.mktemp("cv")
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache_root), WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    cmd = _cv_cmd(work / "A", tiny_root, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4")
    driver = subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_sigint_default,  # a shell without job control starts background jobs with SIGINT ignored
    )
    result1 = work / "A" / "fold_1" / cv.RESULT
    deadline = time.monotonic() + 900
    while not result1.is_file() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    first_out, _ = driver.communicate(timeout=600)
    after_interrupt = {
        "code": driver.returncode,
        "fold_2_done": (work / "A" / "fold_2" / cv.RESULT).is_file(),
        "fold_1": _snapshot(work / "A" / "fold_1"),
    }
    second = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    return {"work": work, "first": first_out, "after_interrupt": after_interrupt, "second": second}


@pytest.mark.slow
def test_interrupted_cv_resumes_and_reports(interrupted_then_resumed):
    run = interrupted_then_resumed
    out = run["work"] / "A"
    assert run["after_interrupt"]["code"] == 130, run["first"]
    assert not run["after_interrupt"]["fold_2_done"]
    assert run["second"].returncode == 0, run["second"].stdout + run["second"].stderr
    assert "fold 1: complete, skipped" in run["second"].stderr
    assert _snapshot(out / "fold_1") == run["after_interrupt"]["fold_1"]  # not one byte of fold 1 rewritten

    report = json.loads((out / "cv_results.json").read_text())
    folds = report["folds"]
    assert [f["fold"] for f in folds] == [1, 2] and all(f["status"] == "done" for f in folds)
    for f in folds:
        _check_fold_against_sklearn(out / f"fold_{f['fold']}", f, epochs=2)
        assert f["wall_s"] > 0
    assert report["summary"]["final_acc"]["mean"] == pytest.approx(np.mean([f["final_acc"] for f in folds]))
    assert report["summary"]["final_acc"]["n"] == 2 and not report["all_folds"]
    cm = np.array(report["confusion"])
    assert cm.sum() == 24 and cm.sum(1).tolist() == [6, 6, 6, 6]  # 2 folds x 4 classes x 3 clips
    assert (out / "confusion.png").stat().st_size > 1000
    assert (out / "cv_curves.png").read_bytes()[:4] == b"\x89PNG"  # every fold's curves
    md = (out / "cv_results.md").read_text()
    assert "paper's protocol" in md and "mean ± std" in md and md in run["second"].stdout


@pytest.mark.slow
def test_failing_fold_is_reported_with_its_log(tmp_path, tiny_root, cache_root):
    """A fold process that dies (here: a weights file that does not exist) is reported, not raised."""
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache_root), HF_HUB_OFFLINE="1")
    cmd = _cv_cmd(tmp_path / "F", tiny_root, "--model.weights=/nonexistent/w.safetensors")
    cmd[cmd.index("1,2")] = "2"
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fold = json.loads((tmp_path / "F" / "cv_results.json").read_text())["folds"][0]
    assert fold["status"] == "failed" and Path(fold["log"]).is_file()
    assert "w.safetensors" in fold["error"] and fold["log"] in proc.stdout


@pytest.mark.slow
def test_ensemble_of_two_real_cv_runs(interrupted_then_resumed, tiny_root, cache_root):
    """Run A (folds 1, 2) and a run B of fold 2 with another seed: the ensemble's fold 2 equals averaging their
    saved predictions by hand, and fold 1 (not in B) is left out."""
    from tests.test_ensemble import _hand

    work = interrupted_then_resumed["work"]
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache_root), WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    cmd = _cv_cmd(work / "B", tiny_root, "--trainer.max_epochs=1", "--seed_everything=1")
    cmd[cmd.index("1,2")] = "2"
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert main(["ensemble", "--runs", str(work / "A"), str(work / "B"), "--out", str(work / "ens")]) == 0
    report = json.loads((work / "ens" / "ensemble.json").read_text())
    assert report["skipped_folds"] == [1] and [f["fold"] for f in report["folds"]] == [2]
    data = [np.load(work / r / "fold_2" / cv.PREDICTIONS) for r in ("A", "B")]
    assert not np.allclose(data[0]["probs"], data[1]["probs"])  # two different models
    fold = report["folds"][0]
    assert fold["A"]["acc"] == pytest.approx(_hand([data[0]["probs"]], data[0]["labels"]))
    assert fold["B"]["acc"] == pytest.approx(_hand([data[1]["probs"]], data[1]["labels"]))
    assert fold["ensemble"]["acc"] == pytest.approx(_hand([d["probs"] for d in data], data[0]["labels"]))


def test_fsd50k_under_cv_runs_its_one_official_split_once(tmp_path, monkeypatch, capsys):
    """FSD50K has one split (dev train/val, eval as the test): cv schedules fold 1 only, and a fold that is not
    there is refused, by cv and by fit, instead of silently running fold 1 again."""
    from tests.test_multilabel import _fake_fsd50k

    root = _fake_fsd50k(tmp_path / "FSD50K")
    args = [*_tiny(tmp_path)[:5], "--data=audiocls.data.fsd50k.FSD50KDataModule", f"--data.root={root}"]
    args += ["--data.sample_rate=8000", "--data.clip_seconds=0.5", "--data.batch_size=2", "--data.num_workers=0"]
    args += [f"--data.frontend={json.dumps(TINY_FRONTEND)}", "--model.backbone=test_resnet"]
    scheduled = []
    monkeypatch.setattr(cv, "run_folds", lambda cfg, h, out, name, folds, *a: scheduled.append(list(folds)))
    assert main(["cv", "--out", str(tmp_path / "cv"), *args]) == 1  # fold 1 "not run": only the scheduling
    assert scheduled == [[1]]
    assert main(["cv", "--out", str(tmp_path / "cv"), "--folds", "2", *args]) == 2
    assert "choose among [1]" in capsys.readouterr().err
    assert main(["fit", "--data.fold=2", "--trainer.max_epochs=1", *args]) == 2
    assert "data.fold=2 is not a fold of FSD50KDataModule: choose 1..1" in capsys.readouterr().err


def test_the_test_fold_callback_does_not_switch_the_datamodule_itself(tiny_args, tmp_path, capsys):
    """The held-out fold as validation dataloader 1 is the datamodule's own setting (data.validate_test_fold, which
    the fold command passes), not state a callback flips on it; the callback without it is one line."""
    callback = {"class_path": "audiocls.commands.cv.TestFoldEachEpoch", "init_args": {"dirpath": str(tmp_path)}}
    args = ["fit", *tiny_args, "--trainer.max_epochs=1", f"--trainer.callbacks+={json.dumps(callback)}"]
    assert main(args) == 2
    assert "set data.validate_test_fold=true with it" in capsys.readouterr().err
    cmd = fold_command(
        {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {}}}},
        tmp_path,
        "x",
        1,
        devices_one=False,
    )
    assert "--data.validate_test_fold=true" in cmd
