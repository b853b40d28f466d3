"""Partial transfer: freeze_until / reinit_from by timm feature_info stages, on a DenseNet and an EfficientNet."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiocls.errors import ConfigError
from audiocls.models.backbone import build_backbone
from audiocls.models.classifier import AudioClassifier
from audiocls.models.transfer import freeze_until, num_stages, reinit_from, stage_of_modules

#: a DenseNet-like (transitions between dense blocks) and an EfficientNet-like (stem + nested blocks) model
ARCHS = ["densenet121", "test_efficientnet"]


def _model(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, num_classes=4, in_chans=3)


def _stage_of_key(model: nn.Module) -> dict[str, int]:
    regions = stage_of_modules(model)
    return {k: regions[k.rsplit(".", 1)[0]] for k in model.state_dict()}


@pytest.mark.parametrize("name", ARCHS)
def test_stages_follow_the_forward_order(name):
    model = _model(name, 0)
    regions = stage_of_modules(model)
    count = num_stages(model)
    assert count == 5
    order = list(regions.values())
    assert order == sorted(order)  # registration order never goes back to an earlier stage
    assert set(order) == set(range(1, count + 2))  # every stage, and the head after them, holds tensors
    # the classifier is after the last stage, the stem in the first
    head = model.pretrained_cfg["classifier"]
    stem = model.pretrained_cfg["first_conv"]
    assert regions[head] == count + 1
    assert regions[stem] == 1


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("stage", [1, 3])
def test_freeze_until_keeps_stages_fixed_in_training(name, stage):
    model = AudioClassifier(name, num_classes=4, freeze_until=stage)
    by_key = _stage_of_key(model.backbone)
    params = dict(model.backbone.named_parameters())
    assert all(params[k].requires_grad == (by_key[k] > stage) for k in params)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    optimizer = model.configure_optimizers()
    spec, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(spec), y).backward()
        optimizer.step()
    after = model.backbone.state_dict()
    changed = {k for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[k])}
    frozen = {k for k in after if by_key[k] <= stage}
    assert not changed & frozen, sorted(changed & frozen)[:5]  # weights and BatchNorm statistics alike
    assert changed - frozen  # the rest did train
    # frozen BatchNorm stays in eval mode through Lightning's model.train() calls
    norms = [m for n, m in model.backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(not m.training for m in norms) and any(m.training for m in norms)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("stage", [2, 6])
def test_reinit_from_takes_later_stages_from_a_fresh_model(name, stage):
    pretrained, fresh = _model(name, 1), _model(name, 2)
    kept = {k: v.clone() for k, v in pretrained.state_dict().items()}
    count = reinit_from(pretrained, fresh, stage)
    by_key = _stage_of_key(pretrained)
    out, new = pretrained.state_dict(), fresh.state_dict()
    assert count == sum(s >= stage for s in by_key.values()) > 0
    for key, s in by_key.items():
        source = new if s >= stage else kept
        assert torch.equal(out[key], source[key]), key
    differs = [k for k in out if out[k].is_floating_point() and not torch.equal(new[k], kept[k])]
    assert differs  # the two seeds did give different models, so the test could tell them apart


def test_reinit_from_through_the_classifier_keeps_the_file_before_the_stage(tmp_path):
    torch.manual_seed(5)
    src = build_backbone("test_efficientnet", num_classes=4)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    model = AudioClassifier("test_efficientnet", num_classes=4, weights=str(tmp_path / "w.pth"), reinit_from=3)
    by_key = _stage_of_key(model.backbone)
    out, ref = model.backbone.state_dict(), src.state_dict()
    assert all(torch.equal(out[k], ref[k]) for k, s in by_key.items() if s < 3)
    assert any(not torch.equal(out[k], ref[k]) for k, s in by_key.items() if s >= 3 and out[k].is_floating_point())


@pytest.mark.parametrize(
    ("option", "value"), [("freeze_until", 6), ("reinit_from", 0), ("reinit_from", 7), ("freeze_until", -1)]
)
def test_out_of_range_stage_is_refused(option, value):
    with pytest.raises(ConfigError, match=f"model.{option}={value}.*choose"):
        AudioClassifier("test_efficientnet", num_classes=4, **{option: value})


def test_model_without_stages_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigError, match="feature_info"):
        freeze_until(model, 1)
