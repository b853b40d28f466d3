"""Shared fixtures: a tiny synthetic dataset in tmp, and CLI arguments that train on it in seconds."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing downloads in tests: set before timm/huggingface_hub import
os.environ["WANDB_MODE"] = "disabled"

from pathlib import Path

import pytest
import torch

from audiocls.data.synthetic import generate_synthetic

torch.set_flush_denormal(True)


def _given(variable: str) -> Path:
    """The folder a user's environment variable names (read at import, before the fixtures below reset it), or a
    path that does not exist: ``real_data`` tests skip then."""
    return Path(os.environ.get(variable) or f"/nonexistent/{variable}")


#: real data and weights, reached as a user reaches theirs (.ci/run sets these where the team's copies exist)
ESC10 = _given("AUDIOCLS_ESC50_ROOT")  # an ESC-50 release folder (ESC-10 is its subset)
FSDD = _given("AUDIOCLS_FSDD_ROOT")
WEIGHTS = _given("AUDIOCLS_WEIGHTS")

#: a small frontend for fast tests: the paper's three windows, 32 mels, 32 x 64 images
TINY_FRONTEND = {
    "windows_ms": [25.0, 50.0, 100.0],
    "hops_ms": [10.0, 25.0, 50.0],
    "n_mels": 32,
    "size": [32, 64],
}


def tiny_frontend_config():
    """:data:`TINY_FRONTEND` as a ``FrontendConfig``."""
    from audiocls.audio.frontend import FrontendConfig

    return FrontendConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_FRONTEND.items()})


def tiny_datamodule(root: Path, augment):
    """The synthetic datamodule on the tiny set at 8 kHz with :data:`TINY_FRONTEND` and ``augment``."""
    from audiocls.data.synthetic import SyntheticDataModule

    return SyntheticDataModule(
        root, num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, num_workers=0,
        frontend=tiny_frontend_config(), augment=augment,
    )  # fmt: skip


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """An empty weights folder for the session: tests never read or write the user's ~/.cache."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, cache_root, weights_root):
    """Every test runs in its own tmp dir, with the decoded-audio cache and the weights folder in tmp and W&B off."""
    monkeypatch.setenv("AUDIOCLS_CACHE", str(cache_root))
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(weights_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def shared_weights(monkeypatch) -> Path:
    """The development machines' ImageNet weights as the weights folder (``AUDIOCLS_WEIGHTS``); skips without it."""
    if not WEIGHTS.is_dir():
        pytest.skip(f"no real weights folder: set AUDIOCLS_WEIGHTS (now {WEIGHTS})")
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(WEIGHTS))
    return WEIGHTS


@pytest.fixture(scope="session")
def tiny_root(cache_root) -> Path:
    """4 classes x 5 folds x 3 clips of 1 s at 8 kHz, in the ESC-50 layout."""
    return generate_synthetic(
        cache_root / "tiny", num_classes=4, clips_per_fold=3, sample_rate=8000, seconds=1.0, seed=0
    )


@pytest.fixture
def tiny_args(tiny_root) -> list[str]:
    """CLI arguments (after the subcommand) for a seconds-long run on the tiny set with timm's test_resnet."""
    import json

    return [
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--model.backbone=test_resnet",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        f"--data.root={tiny_root}",
        "--data.num_classes=4",
        "--data.clips_per_fold=3",
        "--data.seconds=1.0",
        "--data.sample_rate=8000",
        "--data.batch_size=4",
        "--data.num_workers=0",
        f"--data.frontend={json.dumps(TINY_FRONTEND)}",
    ]
