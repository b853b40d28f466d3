"""AudioClassifier and build_backbone."""

from __future__ import annotations

import pytest
import torch

from audiocls.errors import ConfigError
from audiocls.model import AudioClassifier, build_backbone


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
