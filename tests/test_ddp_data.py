"""The data side under 2-process DDP on the CPU (gloo): stored spectrograms written once, no validation split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiocls.data.synthetic import generate_synthetic

from .conftest import TINY_FRONTEND

DDP_CPU = Path(__file__).resolve().parents[1] / "configs" / "trainer" / "ddp_cpu.yaml"


@pytest.mark.slow
def test_ddp_fit_stores_spectrograms_once_and_runs_without_validation(tmp_path):
    root = generate_synthetic(tmp_path / "data", num_classes=3, clips_per_fold=2, sample_rate=8000, seconds=1.0)
    cache = tmp_path / "cache"
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache), WANDB_MODE="disabled", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(DDP_CPU), "--seed_everything=0"]
    cmd += ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=2"]
    cmd += ["--model.backbone=test_resnet", "--data=audiocls.data.synthetic.SyntheticDataModule"]
    cmd += [f"--data.root={root}", "--data.num_classes=3", "--data.clips_per_fold=2", "--data.seconds=1.0"]
    cmd += ["--data.sample_rate=8000", "--data.batch_size=2", "--data.num_workers=0", "--data.val_fraction=0"]
    cmd += ["--data.precompute_frontend=true", f"--data.frontend={json.dumps(TINY_FRONTEND)}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-2000:]
    assert log.count("computing the spectrograms") == 1, log[-3000:]  # one process computed, both mapped
    assert log.count("memory-mapped from") == 2, log[-3000:]
    stored = sorted(p.name for p in cache.iterdir() if p.name.startswith(("spectrograms-", ".tmp-")))
    assert len(stored) == 3 and all(name.startswith("spectrograms-") for name in stored)  # train, val, test
    assert log.count("no validation split") == 1 and "could not find the monitored key" not in log
    (run,) = (tmp_path / "runs" / "audiocls").glob("version_*")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
