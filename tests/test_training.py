"""Real learning on the synthetic set (slow: about a minute on 2 CPU cores)."""

from __future__ import annotations

import json

import pytest

from audiocls.cli import main


@pytest.mark.slow
def test_synthetic_set_is_learned(tiny_root, tmp_path):
    """4 sound classes, chance 0.25: the final-epoch test accuracy must be far above it."""
    args = [
        "fit",
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=20",
        "--trainer.enable_progress_bar=false",
        "--model.backbone=mobilenetv3_small_050",
        "--model.optimizer=torch.optim.AdamW",
        "--model.optimizer.lr=0.003",
        "--model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR",
        "--model.scheduler.T_max=20",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        "--data.num_classes=4",
        "--data.clips_per_fold=10",
        "--data.seconds=1.0",
        "--data.sample_rate=8000",
        "--data.batch_size=16",
        "--data.num_workers=0",
        '--data.frontend={"n_mels": 64, "size": [64, 64]}',
        '--data.augment={"gain_db": 6.0, "shift": 0.5}',
    ]
    assert main(args) == 0
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["test/acc"] >= 0.7, metrics
