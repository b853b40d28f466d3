"""DDP on the CPU (two gloo processes): distributed evaluation counts every test clip exactly once.

The test fold holds 9 clips, an odd number, so Lightning's default ``DistributedSampler`` would pad it to 10 by
repeating a clip, and with a batch of 4 the two processes see 2 and 1 test batches (uneven, as in real runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch.utils.data.distributed import DistributedSampler

from audiocls.cli import main
from audiocls.data.synthetic import SyntheticDataModule, generate_synthetic

from .conftest import TINY_FRONTEND

ROOT = Path(__file__).resolve().parents[1]
DDP_CPU = ROOT / "configs" / "trainer" / "ddp_cpu.yaml"


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory) -> Path:
    """3 classes x 5 folds x 3 clips: 9 clips per fold."""
    root = tmp_path_factory.mktemp("odd") / "synthetic"
    return generate_synthetic(root, num_classes=3, clips_per_fold=3, sample_rate=8000, seconds=1.0, seed=1)


def odd_args(root: Path) -> list[str]:
    return [
        "--seed_everything=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--model.backbone=test_resnet",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        f"--data.root={root}",
        "--data.num_classes=3",
        "--data.clips_per_fold=3",
        "--data.seconds=1.0",
        "--data.sample_rate=8000",
        "--data.batch_size=4",
        "--data.val_fraction=0.25",  # 9 validation clips too: uneven validation batches during fit
        "--data.num_workers=0",
        f"--data.frontend={json.dumps(TINY_FRONTEND)}",
    ]


def test_evaluation_shards_partition_the_fold(odd_root):
    dm = SyntheticDataModule(
        odd_root, num_classes=3, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0
    )
    dm.prepare_data()
    dm.setup("fit")
    n = len(dm.splits["test"])
    assert n == 9
    for name in ("val", "test"):
        seen = []
        for rank in range(2):
            dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
            loader = getattr(dm, f"{name}_dataloader")()
            assert isinstance(loader.sampler, DistributedSampler)  # so Lightning keeps it and adds no padding
            seen.append(list(loader.sampler))
        assert sorted(seen[0] + seen[1]) == list(range(len(dm.splits[name])))  # each clip once, none repeated
    # what Lightning's own sampler would have done: 10 items for 9 clips
    assert sum(len(list(DistributedSampler(dm.splits["test"], 2, r, shuffle=False))) for r in range(2)) == 10
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0)
    assert not isinstance(dm.train_dataloader().sampler, DistributedSampler)  # training is left to Lightning
    dm.trainer = None
    assert not isinstance(dm.test_dataloader().sampler, DistributedSampler)


@pytest.mark.slow
def test_ddp_fit_test_accuracy_equals_single_process_evaluation(odd_root, tmp_path):
    """``strategy: ddp, devices: 2, accelerator: cpu``, run as the ``audiocls`` command (Lightning's DDP
    re-launches the command for rank 1, which cannot happen inside pytest)."""
    cache = tmp_path / "fresh_cache"  # the decoded-audio cache must be built by this run, once
    env = dict(os.environ, AUDIOCLS_CACHE=str(cache), WANDB_MODE="disabled", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(DDP_CPU), *odd_args(odd_root)]
    cmd += ["--trainer.max_epochs=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Starting with 2 processes" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-2000:]

    # the cache: decoded by one process only, one complete folder, no half-written leftovers
    assert log.count("decoding ") == 1, log[-3000:]
    assert [p.name.startswith("decoded-") for p in cache.iterdir()] == [True]

    (run,) = (tmp_path / "runs" / "audiocls").glob("version_*")
    ddp_acc = json.loads((run / "metrics.json").read_text())["test/acc"]
    assert round(ddp_acc * 9, 4) == round(ddp_acc * 9)  # k/9: a padded fold of 10 would give k/10

    # one process, same checkpoint (the final weights the DDP run tested), same fold
    ckpt = run / "checkpoints" / "last.ckpt"
    args = ["test", *odd_args(odd_root), "--trainer.accelerator=cpu", "--trainer.devices=1", f"--ckpt_path={ckpt}"]
    assert main(args) == 0
    single = json.loads(max((tmp_path / "runs" / "audiocls").glob("version_*/metrics.json")).read_text())
    assert single["test/acc"] == pytest.approx(ddp_acc, abs=1e-6)


@pytest.mark.slow
def test_ddp_cv_fold_predictions_equal_single_process_evaluation(odd_root, tmp_path):
    """A cv fold (``TestFoldEachEpoch``) under 2-process DDP: ``predictions.npz`` holds the whole held-out fold
    once, in order, and equals a 1-process evaluation of the same checkpoint; the per-epoch figure agrees."""
    import numpy as np
    import torch

    from audiocls.commands import cv
    from audiocls.training.checkpoints import load_checkpoint

    out = tmp_path / "fold"
    callback = {"class_path": "audiocls.commands.cv.TestFoldEachEpoch", "init_args": {"dirpath": str(out)}}
    env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(DDP_CPU), *odd_args(odd_root)]
    cmd += ["--trainer.max_epochs=1", "--data.validate_test_fold=true", f"--trainer.callbacks+={json.dumps(callback)}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-2000:]
    saved = np.load(out / cv.PREDICTIONS)

    # one process, by hand: the same checkpoint on the whole fold, in the datamodule's order
    (run,) = (tmp_path / "runs" / "audiocls").glob("version_*")
    loaded = load_checkpoint(run / "checkpoints" / "last.ckpt")
    dm = SyntheticDataModule(
        odd_root, num_classes=3, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0,
        val_fraction=0.25,
    )  # fmt: skip
    dm.setup("test")
    probs, labels = [], []
    with torch.no_grad():
        for wave, y in dm.test_dataloader():  # the checkpoint's own frontend, rebuilt from its hyperparameters
            probs.append(loaded.model(loaded.frontend(wave)).softmax(-1).numpy())
            labels.append(y.numpy())
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    test = dm.splits["test"]
    assert len(labels) == 9 and saved["probs"].shape == (9, 3)  # every clip once, none repeated
    assert np.array_equal(saved["labels"], labels)
    assert list(saved["files"]) == [str(test.cache.files[i]) for i in test.indices]
    np.testing.assert_allclose(saved["probs"], probs, atol=1e-5)
    history = json.loads((out / cv.EPOCHS).read_text())
    assert [h["epoch"] for h in history] == [0]
    assert history[0]["acc"] == pytest.approx(float((probs.argmax(1) == labels).mean()))


@pytest.mark.slow
def test_ddp_multilabel_baseline_and_thresholds_cover_every_shard(tmp_path):
    """Multi-label under 2-process DDP: test/mAP_baseline (label frequency) and the per-class thresholds tuned on
    validation come from the whole sharded split (sum and cat states), as one process computes them."""
    import torch

    from audiocls.models.multilabel import tune_thresholds
    from audiocls.training.checkpoints import load_checkpoint

    root = generate_synthetic(
        tmp_path / "poly", num_classes=3, clips_per_fold=3, sample_rate=8000, seconds=1.0, seed=2, max_sources=2
    )
    args = [*odd_args(root), "--data.max_sources=2"]
    env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(DDP_CPU), *args, "--trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-2000:]
    (run,) = (tmp_path / "runs" / "audiocls").glob("version_*")
    ddp = json.loads((run / "metrics.json").read_text())

    dm = SyntheticDataModule(
        root, num_classes=3, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0,
        val_fraction=0.25, max_sources=2,
    )  # fmt: skip
    dm.setup("fit")
    test = torch.stack(dm.splits["test"].labels)  # (9, 3) multi-hot, the whole fold
    rate = test.mean(0)
    assert ddp["test/mAP_baseline"] == pytest.approx(float(rate[rate > 0].mean()), abs=1e-6)
    shard = test[0::2].mean(0)  # rank 0's share (UnrepeatedDistributedSampler): an unsynced figure would be this
    assert abs(float(shard[shard > 0].mean()) - ddp["test/mAP_baseline"]) > 1e-3

    loaded = load_checkpoint(run / "checkpoints" / "last.ckpt")
    probs, target = [], []
    with torch.no_grad():
        for wave, y in dm.val_dataloader():
            probs.append(loaded.model(loaded.frontend(wave)).sigmoid())
            target.append(y)
    assert bool(loaded.model.thresholds_tuned)
    expected = tune_thresholds(torch.cat(probs), torch.cat(target))
    torch.testing.assert_close(loaded.model.thresholds, expected, atol=1e-5, rtol=0)
