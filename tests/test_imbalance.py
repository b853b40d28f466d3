"""Class imbalance: ``data.sampler: balanced`` and ``model.class_weights: balanced`` on an imbalanced synthetic set."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiocls.audio.frontend import FrontendConfig
from audiocls.cli import main
from audiocls.data.synthetic import SyntheticDataModule
from audiocls.errors import ConfigError
from audiocls.models.classifier import AudioClassifier
from tests.conftest import TINY_FRONTEND


class ImbalancedSynthetic(SyntheticDataModule):
    """The tiny synthetic set with class 0 cut to one clip per training fold (3 per fold for the others)."""

    def list_clips(self):
        clips = super().list_clips()
        kept, seen = [], set()
        for c in clips:
            if c.label == 0 and c.fold != self.fold:
                if c.fold in seen:
                    continue
                seen.add(c.fold)
            kept.append(c)
        return kept


def _datamodule(tiny_root, **kwargs) -> ImbalancedSynthetic:
    dm = ImbalancedSynthetic(
        tiny_root, num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4,
        num_workers=0, frontend=FrontendConfig(**TINY_FRONTEND), val_fraction=0.0, **kwargs,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _drawn_share(dm, epochs: int = 200) -> np.ndarray:
    torch.manual_seed(0)
    counts = np.zeros(dm.num_classes)
    for _ in range(epochs):
        for _, y in dm.train_dataloader():
            counts += np.bincount(y.numpy(), minlength=dm.num_classes)
    return counts / counts.sum()


def test_the_set_is_imbalanced(tiny_root):
    assert _datamodule(tiny_root).train_class_counts() == [4, 12, 12, 12]


def test_balanced_sampler_draws_every_class_equally_often(tiny_root):
    plain = _drawn_share(_datamodule(tiny_root))
    balanced = _drawn_share(_datamodule(tiny_root, sampler="balanced"))
    assert plain[0] == pytest.approx(4 / 40, abs=0.02)  # shuffling keeps the imbalance
    np.testing.assert_allclose(balanced, 0.25, atol=0.02)  # 200 epochs x 40 draws: sd 0.005
    dm = _datamodule(tiny_root, sampler="balanced")
    assert len(dm.train_dataloader().sampler) == 40  # one epoch = len(train) draws
    assert dm.val_dataloader().sampler.__class__.__name__ == "SequentialSampler"  # evaluation untouched


def test_balanced_sampler_under_ddp_is_a_clear_error(tiny_root):
    dm = _datamodule(tiny_root, sampler="balanced")
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ConfigError, match="data.sampler=balanced .* 2 processes .*model.class_weights=balanced"):
        dm.train_dataloader()


def test_balanced_sampler_on_multi_label_data_is_a_clear_error(tmp_path):
    dm = SyntheticDataModule(
        tmp_path / "mixtures", num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0,
        frontend=FrontendConfig(**TINY_FRONTEND), val_fraction=0.0, max_sources=3, sampler="balanced",
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert dm.task == "multilabel"
    with pytest.raises(ConfigError, match="data.sampler=balanced .* multi-label .* remove data.sampler"):
        dm.train_dataloader()


def test_bad_sampler_and_class_weights_are_config_errors(tiny_root):
    with pytest.raises(ConfigError, match="data.sampler='uniform'"):
        _datamodule(tiny_root, sampler="uniform")
    with pytest.raises(ConfigError, match=r"model.class_weights=\[1.0, 2.0\]: give 4"):
        AudioClassifier("test_resnet", num_classes=4, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="model.class_weights='inverse'"):
        AudioClassifier("test_resnet", num_classes=4, class_weights="inverse")


def test_balanced_class_weights_come_from_the_training_split_and_weigh_the_loss(tiny_root):
    dm = _datamodule(tiny_root)
    model = AudioClassifier("test_resnet", num_classes=4, in_chans=dm.in_chans, class_weights="balanced")
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, dm)
    # N / (K * n_c) with counts [4, 12, 12, 12]: the minority class weighs 3x the others
    torch.testing.assert_close(model.loss_weight, torch.tensor([40 / 16, 40 / 48, 40 / 48, 40 / 48]))
    logits, y = torch.randn(6, 4), torch.tensor([0, 0, 1, 2, 3, 3])
    torch.testing.assert_close(model._loss(logits, y), F.cross_entropy(logits, y, weight=model.loss_weight))
    assert model._loss(logits, y) != pytest.approx(float(F.cross_entropy(logits, y)))


def test_explicit_class_weights(tiny_root):
    model = AudioClassifier("test_resnet", num_classes=4, class_weights=[1.0, 0.0, 0.0, 0.0])
    logits, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(model._loss(logits, y), F.cross_entropy(logits[:1], y[:1]))


def test_both_settings_run_through_the_cli(tiny_args, tmp_path):
    args = [
        *["--data=tests.test_imbalance.ImbalancedSynthetic" if a.startswith("--data=") else a for a in tiny_args],
        "--data.sampler=balanced",
        "--model.class_weights=balanced",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--test_after_fit=false",
    ]
    assert main(["fit", *args]) == 0
    ckpt = torch.load(tmp_path / "runs/audiocls/version_0/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["class_weights"] == "balanced"
    assert ckpt["datamodule_hyper_parameters"]["sampler"] == "balanced"
