"""What a run prints: the progress bar (lines off a terminal), quiet start-up, the end-of-fit summary."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import yaml

from audiocls.cli import main
from audiocls.training.console import AudioProgressBar, quiet_third_party

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _fit_args(tiny_args: list[str]) -> list[str]:
    """tiny_args with the progress bar left on (the default of every shipped config)."""
    args = [a for a in tiny_args if not a.startswith("--trainer.enable_progress_bar")]
    return [*args, "--trainer.max_epochs=2", "--trainer.limit_train_batches=3"]


def test_no_shipped_config_turns_the_progress_bar_off():
    for path in CONFIGS.rglob("*.yaml"):
        trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer") or {}
        assert trainer.get("enable_progress_bar", True) is not False, path


def test_progress_off_a_terminal_is_periodic_lines_and_the_summary_names_the_run(tiny_args, tmp_path, capsys):
    """Under pytest stdout is not a terminal: no carriage-return bar, one line per step and per validation."""
    assert main(["fit", *_fit_args(tiny_args)]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out  # no redrawn bar in a log file
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in lines] == [
        "epoch 0 step 3/3",
        "epoch 0 validated",
        "epoch 1 step 3/3",
        "epoch 1 validated",
    ]
    assert "train/loss_step=" in lines[0] and "val/acc=" in lines[1]
    run = tmp_path / "runs" / "audiocls" / "version_0"
    assert "test (final-epoch weights):  test/acc=" in out
    shown = {line[:17].strip(): Path(line[17:].strip()).resolve() for line in out.splitlines() if len(line) > 18}
    assert shown["run written to"] == run
    assert shown["last checkpoint:"] == run / "checkpoints" / "last.ckpt"
    assert shown["best checkpoint:"] == run / "checkpoints" / "best.ckpt"
    assert "trained 2 epochs, 6 steps" in out
    assert "test/acc_class/" not in out.split("=" * 72)[-2]  # per-class figures stay in metrics.json


def test_line_every_n_steps_and_a_configured_bar_is_kept(tiny_args, capsys):
    bar = {"class_path": "audiocls.training.console.AudioProgressBar", "init_args": {"line_every_n_steps": 2}}
    import json

    args = [*_fit_args(tiny_args), f"--trainer.callbacks={json.dumps([bar])}", "--test_after_fit=false"]
    assert main(["fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=5"]) == 0
    steps = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines() if " step " in line]
    assert steps == ["epoch 0 step 2/5", "epoch 0 step 4/5", "epoch 0 step 5/5"]  # one bar: not printed twice


def test_interactive_bar_draws_tqdm(tiny_args, capsys):
    import json

    bar = {"class_path": "audiocls.training.console.AudioProgressBar", "init_args": {"interactive": True}}
    args = [*_fit_args(tiny_args), f"--trainer.callbacks={json.dumps([bar])}", "--test_after_fit=false"]
    assert main(["fit", *args]) == 0
    out = capsys.readouterr().out
    assert "Epoch 1" in out and "\r" in out and "epoch 0 step" not in out


def test_quiet_hides_only_the_warnings_it_names_and_the_tip_and_only_inside(caplog):
    leafspec = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_third_party():
            warnings.warn_explicit(leafspec, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities")
            warnings.warn_explicit(
                "instantiate_classes was deprecated", DeprecationWarning, "cli.py", 612, module="lightning.pytorch.cli"
            )
            warnings.warn_explicit("old api", DeprecationWarning, "x.py", 1, module="timm.layers")
            warnings.warn_explicit("ours", DeprecationWarning, "cli.py", 1, module="audiocls.training.cli")
            warnings.warn_explicit("a real problem", UserWarning, "x.py", 1, module="lightning.pytorch.trainer")
        warnings.warn_explicit(leafspec, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities")
    # a third-party deprecation it does not name is shown; after the block the named one is shown again
    assert sorted(str(w.message) for w in seen) == sorted(["a real problem", leafspec, "old api", "ours"])
    assert warnings.filters == before
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        with quiet_third_party():
            rank_zero.info("💡 Tip: try installing litlogger")
            rank_zero.info("GPU available: False")
        assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]
        rank_zero.info("💡 Tip: outside the block")
    assert caplog.records[-1].getMessage() == "💡 Tip: outside the block"
    assert not rank_zero.filters


def test_each_log_line_is_printed_once(tiny_args, tmp_path):
    """Through ``audiocls.cli.main`` in a fresh process (pytest's own log handlers would hide the bug in-process):
    Lightning's package logger printed every line itself and passed it on to the root handler too."""
    import subprocess
    import sys

    args = [*tiny_args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--test_after_fit=false"]
    code = f"import sys; from audiocls.cli import main; sys.exit(main({['fit', *args]!r}))"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert [line for line in lines if "Seed set to 0" in line] == [
        "INFO lightning.fabric.utilities.seed: Seed set to 0"
    ]
    assert sum("GPU available" in line for line in lines) == 1


def test_fit_output_has_no_tip(tiny_args, capsys, caplog):
    with caplog.at_level(logging.INFO):
        assert main(["fit", *_fit_args(tiny_args), "--trainer.max_epochs=1", "--test_after_fit=false"]) == 0
    out, err = capsys.readouterr()
    text = out + err + caplog.text
    assert "litlogger" not in text and "LeafSpec" not in text


def test_bad_line_every_n_steps():
    import pytest

    with pytest.raises(ValueError, match="line_every_n_steps=0"):
        AudioProgressBar(line_every_n_steps=0)
