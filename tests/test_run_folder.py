"""Output goes where the user says: ``--trainer.default_root_dir`` moves the whole run, also with a shipped config;
an explicit logger ``save_dir`` still wins (benchmarks/results.py relies on it); ``cv --out`` follows the same root."""

from __future__ import annotations

from pathlib import Path

import yaml

from audiocls.cli import main
from audiocls.commands import cv

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: one batch per phase, one epoch: the run folder is what is tested, not the training
ONE_BATCH = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
]


def _checkpoints(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("last.ckpt"))


def test_no_shipped_config_pins_the_logger_folder():
    """A ``save_dir`` in a shipped config would win over ``--trainer.default_root_dir`` again."""
    for path in sorted(CONFIGS.rglob("*.yaml")):
        logger = (yaml.safe_load(path.read_text()) or {}).get("trainer", {}).get("logger")
        args = logger.get("init_args", {}) if isinstance(logger, dict) else {}
        assert "save_dir" not in args, f"{path.name} sets trainer.logger.init_args.save_dir"


def test_default_root_dir_moves_the_run_of_a_shipped_config(tiny_args, tmp_path, caplog):
    caplog.set_level("INFO")
    args = ["fit", "--config", str(CONFIGS / "demo.yaml"), *tiny_args, *ONE_BATCH, "--trainer.default_root_dir=out"]
    assert main(args) == 0
    assert _checkpoints(tmp_path) == ["out/demo/version_0/checkpoints/last.ckpt"]
    assert (tmp_path / "out" / "demo" / "version_0" / "metrics.json").is_file()
    said = [r.getMessage() for r in caplog.records if "writing the run to" in r.getMessage()]
    assert said == [f"fit: writing the run to {tmp_path / 'out' / 'demo' / 'version_0'}"]


def test_without_a_root_the_run_goes_under_runs(tiny_args, tmp_path, capsys):
    assert main(["fit", *tiny_args, *ONE_BATCH]) == 0
    assert _checkpoints(tmp_path) == ["runs/audiocls/version_0/checkpoints/last.ckpt"]
    assert str(tmp_path / "runs" / "audiocls" / "version_0") in capsys.readouterr().out  # the final lines: absolute


def test_an_explicit_save_dir_still_wins(tiny_args, tmp_path):
    """The form benchmarks/results.py and cv's folds use: save_dir/name/version names the run folder exactly."""
    pre = "--trainer.logger.init_args"
    args = ["fit", *tiny_args, *ONE_BATCH, "--trainer.default_root_dir=root"]
    assert main([*args, f"{pre}.save_dir=logs", f"{pre}.name=exp", f"{pre}.version=run"]) == 0
    assert _checkpoints(tmp_path) == ["logs/exp/run/checkpoints/last.ckpt"]


def test_cv_out_defaults_under_the_same_root(tiny_args, tmp_path, monkeypatch):
    monkeypatch.setattr(cv, "run_folds", lambda *a, **k: {})  # no fold processes: only where the cv folder goes
    assert main(["cv", "--folds", "1", *tiny_args, "--trainer.default_root_dir=elsewhere"]) == 1  # fold 1 "not run"
    assert (tmp_path / "elsewhere" / "audiocls-cv" / "cv.json").is_file()
    assert not (tmp_path / "runs").exists()
    assert main(["cv", "--folds", "1", *tiny_args]) == 1
    assert (tmp_path / "runs" / "audiocls-cv" / "cv.json").is_file()
