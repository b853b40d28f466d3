"""``audiocls study``: the study file's checks (one line each, before any trial), the objective, pruning inside a fit,
and the shipped paper's study end to end on generated ESC-10-layout data: two workers, a failed setting recorded,
Ctrl-C and a kill followed by resumes that redo nothing finished, the table, the plot and ``--final``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from audiocls.cli import main
from audiocls.commands.study_fit import StudyRecorder, open_storage
from audiocls.commands.study_run import fit_objective
from audiocls.commands.study_spec import load_spec
from audiocls.errors import ConfigError
from tests.test_combinations import SMALL, _write_esc10

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "configs" / "studies"


def _write(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _tiny_study(tmp_path: Path, tiny_root: Path, **changes) -> Path:
    """A study on the tiny synthetic set (fits of seconds): base config written beside it."""
    base = {
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "enable_model_summary": False},
        "model": {"backbone": "test_resnet", "pretrained": False},
        "data": {
            "class_path": "audiocls.data.synthetic.SyntheticDataModule",
            "init_args": {"root": str(tiny_root), "num_classes": 4, "clips_per_fold": 3, "seconds": 1.0,
                          "sample_rate": 8000, "batch_size": 4, "num_workers": 0,
                          "frontend": {"n_mels": 32, "size": [32, 64]}},
        },
    }  # fmt: skip
    _write(tmp_path / "base.yaml", base)
    study = {"config": [str(tmp_path / "base.yaml")], "space": {"model.label_smoothing": {"choices": [0.0, 0.1]}},
             "seeds": [0], "sampler": "grid", **changes}  # fmt: skip
    return _write(tmp_path / "tiny_study.yaml", study)


# --- the study file: one line per mistake, before any trial ------------------------------------------------------
@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ({"space": {}}, "space: is empty"),
        ({"seeds": ["a", "b"]}, "seeds: 'a' is not an integer; write seeds: [0, 1, 2]"),
        ({"space": {"model.optimizer.init_args.lr": {"log": [1e-4, 1e-2]}}}, "set sampler: tpe"),
        ({"sampler": "tpe"}, "n_trials: None; sampler tpe needs"),
        ({"space": {"transfer": {"choices": [1, 2]}}}, "'transfer' is not a config key"),
        ({"objective": {"metric": "test/acc"}}, "is not a validation key"),
        ({"seed": [0]}, "unknown entries ['seed']"),
        ({"pruner": "median"}, "a grid runs every setting whole"),
        ({"space": {"model.label_smoothing": {"float": [0.2, 0.1]}}, "sampler": "tpe", "n_trials": 2},
         "must be [low, high] numbers with low < high"),
    ],
)  # fmt: skip
def test_study_file_mistakes_are_one_line(tmp_path, entries, expected):
    study = {"config": [], "space": {"model.label_smoothing": {"choices": [0.0, 0.1]}}, **entries}
    with pytest.raises(ConfigError, match=None) as err:
        load_spec(_write(tmp_path / "s.yaml", study))
    assert expected in str(err.value)
    assert str(tmp_path / "s.yaml") in str(err.value)


def _run_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("audiocls: error:")]
    assert len(err) == 1
    return err[0]


def test_unknown_key_in_the_space_stops_before_any_trial(tmp_path, tiny_root, capsys):
    path = _tiny_study(tmp_path, tiny_root, space={"model.label_smothing": {"choices": [0.0, 0.1]}})
    line = _run_error(["study", "--config", str(path), "--out", str(tmp_path / "out")], capsys)
    assert "space.model.label_smothing" in line and "not a valid fit setting" in line
    assert not (tmp_path / "out").exists()


def test_a_fold_the_dataset_does_not_have(tmp_path, tiny_root, capsys):
    path = _tiny_study(tmp_path, tiny_root, folds=[1, 9])
    line = _run_error(["study", "--config", str(path), "--out", str(tmp_path / "out")], capsys)
    assert "data.fold 9 is not a fold of SyntheticDataModule; its folds are 1..5" in line


def test_a_storage_that_cannot_be_opened(tmp_path, tiny_root, capsys):
    path = _tiny_study(tmp_path, tiny_root)
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    line = _run_error(["study", "--config", str(path), "--out", str(tmp_path / "out"), "--storage", url], capsys)
    assert f"--storage {url}: cannot be opened" in line and "sqlite:///study.db" in line


def test_two_studies_with_different_spaces_in_one_folder(tmp_path, tiny_root, capsys):
    path = _tiny_study(tmp_path, tiny_root)
    out = tmp_path / "out"
    assert main(["study", "--config", str(path), "--out", str(out), "--report"]) == 0
    _tiny_study(tmp_path, tiny_root, space={"model.label_smoothing": {"choices": [0.0, 0.2]}})
    line = _run_error(["study", "--config", str(path), "--out", str(out), "--report"], capsys)
    assert f"{out} holds study 'tiny_study' with another space" in line
    # the same study again is welcome (that is how it resumes)
    _tiny_study(tmp_path, tiny_root)
    assert main(["study", "--config", str(path), "--out", str(out), "--report"]) == 0


def test_the_objective_is_the_final_or_the_best_epoch():
    val = {"0": 0.5, "1": 0.9, "2": 0.7}
    assert fit_objective(val, "final", "max") == (0.7, 2)
    assert fit_objective(val, "best", "max") == (0.9, 1)
    assert fit_objective(val, "best", "min") == (0.5, 0)
    assert fit_objective({}, "final", "max") == (None, None)


def test_a_fit_reports_its_validation_key_and_stops_when_optuna_prunes(tmp_path):
    storage = str(tmp_path / "s.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    for _ in range(5):  # five earlier settings at 0.9 on epoch 3: the median pruner stops one at 0.2
        t = study.ask()
        t.report(0.9, step=3)
        study.tell(t, 0.9)
    trial = study.ask()
    recorder = StudyRecorder(str(tmp_path / "fit"), "val/acc", storage, "s", trial._trial_id, report_from=3)

    def trainer(epoch: int, value: float):
        return SimpleNamespace(
            sanity_checking=False, callback_metrics={"val/acc": torch.tensor(value)}, current_epoch=epoch,
            is_global_zero=True, strategy=SimpleNamespace(broadcast=lambda x: x), should_stop=False,
        )  # fmt: skip

    early = trainer(2, 0.1)
    recorder.on_validation_end(early, None)
    assert not early.should_stop  # before report_from: recorded, not reported
    late = trainer(3, 0.2)
    recorder.on_validation_end(late, None)
    assert late.should_stop
    record = json.loads((tmp_path / "fit" / "study_fit.json").read_text())
    assert record["val"] == {"2": pytest.approx(0.1), "3": pytest.approx(0.2)} and record["pruned_at"] == 3
    stored = optuna.load_study(study_name="s", storage=open_storage(storage)).trials[trial.number]
    assert stored.intermediate_values == {3: pytest.approx(0.2)}


def test_fits_of_a_study_are_grouped_in_wandb_and_logged_in_their_folders(tmp_path):
    from audiocls.commands.study_run import Runner

    spec = load_spec(_write(tmp_path / "s.yaml", {"config": [], "space": {"model.label_smoothing": {"choices": [0.1]}},
                                                  "seeds": [3]}))  # fmt: skip
    study = SimpleNamespace(study_name="s")
    wandb = {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.WandbLogger"}, "max_epochs": 3}}
    csv = {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger"}, "max_epochs": 3}}
    run_dir = tmp_path / "trials" / "abc" / "seed3"
    for cfg, expected in ((wandb, [f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.logger.init_args.name=s-abc-seed3",
                                   "--trainer.logger.dict_kwargs.group=s"]),
                          (csv, [f"--trainer.logger.init_args.save_dir={run_dir.parent}", "--trainer.logger.init_args.name=",
                                 "--trainer.logger.init_args.version=seed3"])):  # fmt: skip
        runner = Runner(spec=spec, out=tmp_path, study=study, storage="j", fit_args=["--config", "b.yaml"], cfg=cfg,
                        monitor="val/acc", mode="max")  # fmt: skip
        user, cmd = runner.fit_command({"model.label_smoothing": 0.1}, {"seed_everything": 3}, run_dir, 7, 0)
        assert user == ["fit", "--config", "b.yaml", "--model.label_smoothing=0.1", "--seed_everything=3"]
        assert cmd[-3:] == expected


def test_the_final_report_gives_each_folds_mean_over_seeds_and_the_wall_time(tmp_path):
    from audiocls.commands.study_report import write_final_report

    runs = {}
    for seed, (acc10, acc2) in enumerate(((0.9, 0.95), (0.95, 1.0))):
        cv = tmp_path / "final" / f"pretrained-seed{seed}"
        cv.mkdir(parents=True)
        folds = [{"fold": 10, "status": "done", "final_acc": acc10}, {"fold": 2, "status": "done", "final_acc": acc2},
                 {"fold": 3, "status": "failed"}]  # fmt: skip
        (cv / "cv_results.json").write_text(json.dumps({"wall_s_total": 600.0, "folds": folds}))
        runs[seed] = cv
    write_final_report(tmp_path, SimpleNamespace(name="s"), {}, {"pretrained": runs}, "acc")
    variant = json.loads((tmp_path / "final_results.json").read_text())["variants"]["pretrained"]
    assert variant["per_fold"] == {"2": pytest.approx(0.975), "10": pytest.approx(0.925)}
    assert list(variant["per_fold"]) == ["2", "10"]  # in fold order
    assert variant["wall_s"] == 1200.0 and variant["all"]["n"] == 4


def test_every_shipped_study_passes_its_checks(monkeypatch):
    monkeypatch.chdir(ROOT)  # a study's config paths are relative to where audiocls runs, as --config's are
    for path in sorted(STUDIES.glob("*.yaml")):
        spec = load_spec(path)
        assert spec.axes and all(Path(c).is_file() for c in spec.config), path


# --- the paper's study, end to end ---------------------------------------------------------------------------
def _study_process(argv: list[str], env: dict) -> subprocess.Popen:
    """The study as a user's foreground command: SIGINT at its default (Ctrl-C) even when the test suite itself runs
    in the background, where the shell leaves SIGINT ignored and every child inherits that."""
    return subprocess.Popen(
        [sys.executable, "-m", "audiocls.cli", "study", *argv], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for(out: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> list[Path]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        done = sorted(out.glob("trials/*/*/study_result.json"))
        if len(done) >= n:
            return done
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.5)
    raise AssertionError(f"fewer than {n} fits finished in {timeout} s")


@pytest.mark.slow
def test_the_paper_study_runs_resumes_and_reports(tmp_path, tmp_path_factory):
    """configs/studies/partial_transfer.yaml with a tiny space (2 stages + one that fails) x 2 seeds on ESC-10-layout
    data, 2 workers; Ctrl-C, then a kill, then a run to the end: no finished fit is run twice."""
    root = _write_esc10(tmp_path_factory.mktemp("data") / "ESC-50-master")
    study = yaml.safe_load((STUDIES / "partial_transfer.yaml").read_text())
    study["space"]["transfer"]["choices"] = [{"model.freeze_until": 0}, {"model.reinit_from": 2},
                                             {"model.freeze_until": 99}]  # fmt: skip
    study["seeds"] = [0, 1]
    study["final"] = {"seeds": [0], "folds": [1, 2], "variants": {"smooth": {}, "plain": {"model.label_smoothing": 0}}}
    path = _write(tmp_path / "partial_transfer.yaml", study)
    out = tmp_path / "study"
    args = ["--config", str(path), "--out", str(out), "--workers", "2", f"--data.root={root}",
            "--model.pretrained=false", "--trainer.max_epochs=2", *SMALL[1:]]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    first = _study_process(args, env)
    _wait_for(out, 1, first)
    first.send_signal(signal.SIGINT)  # Ctrl-C: the driver stops its fits, fails their trials for a retry
    assert first.wait(timeout=120) == 130, first.communicate()[0][-3000:]
    storage = optuna.load_study(study_name="partial_transfer", storage=open_storage(str(out / "optuna.journal")))
    assert not [t for t in storage.trials if t.state.name == "RUNNING"]  # consistent: nothing left running

    second = _study_process(args, env)
    kept = {p: p.stat().st_mtime_ns for p in _wait_for(out, len(list(out.glob("trials/*/*/study_result.json"))) + 1,
                                                         second)}  # fmt: skip
    os.killpg(second.pid, signal.SIGKILL)  # a kill: no cleanup at all
    second.wait()
    kept = {p: m for p, m in kept.items() if p.is_file()}

    third = _study_process([*args, "--final"], env)
    log = third.communicate(timeout=900)[0]
    assert third.returncode == 1, log[-3000:]  # 1: a setting failed (and the study went on)
    done = sorted(out.glob("trials/*/*/study_result.json"))
    assert len(done) == 4  # 2 stages x 2 seeds; the failing stage never writes one
    for p, mtime in kept.items():  # finished before the interruptions: not run again
        assert p.stat().st_mtime_ns == mtime
        assert (p.parent / "fit.log").read_text().count("$ audiocls fit") == 1
    rows = json.loads((out / "study_results.json").read_text())["rows"]
    states = {json.dumps(r["setting"]): (r["state"], r["n"], r["error"]) for r in rows}
    assert states['{"model.freeze_until": 0}'][:2] == ("COMPLETE", 2)
    assert states['{"model.reinit_from": 2}'][:2] == ("COMPLETE", 2)
    state, n, error = states['{"model.freeze_until": 99}']
    assert (state, n) == ("FAIL", 0) and "freeze_until" in error
    table = (out / "study_results.md").read_text()
    assert "val/acc % (objective)" in table and "test/acc % (not used)" in table
    assert "1-minute load average at their starts" in table  # wall times carry the load they ran under
    assert (out / "study_transfer.png").stat().st_size > 10_000
    result = json.loads(next(iter(out.glob("trials/*/seed0/study_result.json"))).read_text())
    assert result["command"].startswith("audiocls fit --config configs/esc10.yaml --config configs/recipes/cpu.yaml")
    assert "--data.fold=1" in result["command"] and "--data.val_fold=2" in result["command"]
    final = json.loads((out / "final_results.json").read_text())
    assert final["chosen"] == rows[0]["setting"]
    assert {v: final["variants"][v]["all"]["n"] for v in ("smooth", "plain")} == {"smooth": 2, "plain": 2}
    cv_log = (out / "final" / "smooth-seed0" / "cv.log").read_text()
    assert "--data.val_fold" not in cv_log.splitlines()[0]
    (out / "final_results.md").unlink()  # --report --final writes the final table again and runs no cv
    again = _study_process([*args, "--report", "--final"], env)
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 1, log[-3000:]
    assert "| smooth |" in (out / "final_results.md").read_text()
    assert (out / "final" / "smooth-seed0" / "cv.log").read_text() == cv_log


@pytest.mark.slow
def test_workers_as_submitit_jobs_share_the_journal(tmp_path, tiny_root):
    """--launcher submitit (its local executor here; SLURM where sbatch exists): the workers are jobs running
    `audiocls study --worker` on the same journal; the driver waits and writes the report."""
    pytest.importorskip("submitit")
    path = _tiny_study(tmp_path, tiny_root)
    out = tmp_path / "out"
    argv = ["study", "--config", str(path), "--out", str(out), "--workers", "2", "--launcher", "submitit",
            "--cluster", "local", "--trainer.enable_progress_bar=false"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((out / "study_results.json").read_text())["rows"]
    assert sorted((r["setting"]["model.label_smoothing"], r["state"], r["n"]) for r in rows) == [
        (0.0, "COMPLETE", 1), (0.1, "COMPLETE", 1)]  # fmt: skip
    assert len(list(out.glob("worker_*.log"))) == 2


def test_the_plot_puts_an_empty_choice_on_its_own_setting_only():
    """A named axis whose first choice is ``{}`` (the base config): every other setting keeps its own point."""
    from audiocls.commands.study_report import _series
    from audiocls.commands.study_spec import Axis

    axis = Axis("variant", "choices", ({}, {"model.label_smoothing": 0.1}))
    fit = {"status": "done", "objective": 0.5, "test": {"test/acc": 0.4}}
    rows = [{"setting": {"model.label_smoothing": 0.1}, "fits": [fit]}, {"setting": {}, "fits": [fit]}]
    assert _series(None, axis, rows) == {"model.label_smoothing": [(0.1, [0.5], [0.4])], "variant": [(0, [0.5], [0.4])]}


@pytest.mark.slow
def test_sigterm_to_a_background_driver_with_one_worker_fails_the_running_trial_for_a_retry(tmp_path, tiny_root):
    """`kill PID` of `audiocls study ... &` (one worker; SIGINT ignored, as a shell leaves a background job): the
    running trial is failed with ``retry`` before the driver exits. The driver used to wait in Thread.join, which
    the interrupt left believing the worker had stopped: it exited and the trial stayed RUNNING."""
    path = _tiny_study(tmp_path, tiny_root)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiocls.cli", "study", "--config", str(path), "--out", str(out),
         "--trainer.max_epochs=500", "--trainer.enable_progress_bar=false"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    t0 = time.monotonic()
    while not any("Epoch" in p.read_text() or "epoch" in p.read_text() for p in out.glob("trials/*/*/fit.log")):
        assert proc.poll() is None and time.monotonic() - t0 < 300, proc.communicate()[0][-3000:]
        time.sleep(0.5)
    time.sleep(3)
    proc.terminate()
    assert proc.wait(timeout=120) == 130, proc.communicate()[0][-3000:]
    trials = optuna.load_study(study_name="tiny_study", storage=open_storage(str(out / "optuna.journal"))).trials
    assert [(t.state.name, t.user_attrs.get("retry")) for t in trials] == [("FAIL", "interrupted")]


def test_the_report_calls_a_running_trial_whose_process_is_gone_interrupted(tmp_path):
    """A study killed with SIGKILL leaves its trial RUNNING in the storage; the report (``--report``) says it was cut
    short and that rerunning resumes it, not that it is running."""
    import socket

    from audiocls.commands.study_report import setting_rows

    path = _write(tmp_path / "s.yaml", {"config": [str(ROOT / "configs" / "demo.yaml")], "sampler": "grid",
                                        "space": {"model.label_smoothing": {"choices": [0.0, 0.1]}}})  # fmt: skip
    spec = load_spec(path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.create_study(study_name="s", direction="maximize")
    for pid in (int(gone.stdout), os.getppid()):  # a finished process; a live one (pytest's parent)
        trial = study.ask()
        for name, value in (("key", f"k{pid}"), ("setting", {"model.label_smoothing": pid}),
                            ("host", socket.gethostname()), ("pid", pid)):  # fmt: skip
            trial.set_user_attr(name, value)
    rows = {r["key"]: (r["state"], r["error"]) for r in setting_rows(study, spec, tmp_path, "val/acc", "max")}
    assert rows[f"k{int(gone.stdout)}"] == (
        "INTERRUPTED",
        "cut short: its process is gone; run the same command again to resume",
    )
    assert rows[f"k{os.getppid()}"] == ("RUNNING", None)
