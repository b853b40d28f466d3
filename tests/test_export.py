"""``audiocls export``: the DFT-conv frontend equals the training frontend; ONNX and TorchScript files match
PyTorch on audio, carry their metadata, take any batch size, and a failed parity check fails the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiocls.commands.export as export
from audiocls.audio.dft import DFTLogMel
from audiocls.audio.frontend import build_frontend
from audiocls.cli import main
from audiocls.commands.export import read_metadata, run_exported
from audiocls.training.checkpoints import load_checkpoint
from tests.conftest import TINY_FRONTEND
from tests.test_predict import CLASSES, make_checkpoint, noise


@pytest.mark.parametrize(
    ("sample_rate", "seconds", "frontend"),
    [
        (8000, 1.0, TINY_FRONTEND),
        (44100, 0.5, {}),  # the paper's: n_fft 4410, 128 mels, 128 x 250
        (16000, 0.7, {"n_mels": 40, "size": [40, 50], "mean": [-4.0, -5.0, -6.0], "std": 3.0, "f_min": 50.0}),
        (8000, 0.5, {"windows_ms": [32.0], "hops_ms": [8.0], "size": None, "log": "db", "n_fft": 512}),
    ],
    ids=["tiny", "paper-44k", "normalised", "single-db-native"],
)
def test_dft_frontend_equals_the_training_frontend(sample_rate, seconds, frontend):
    fe = build_frontend(frontend, sample_rate).eval()
    n = round(sample_rate * seconds)
    wave = torch.from_numpy(noise(seconds, sample_rate, seed=3)[:, 0]) * torch.linspace(0, 1, n)  # silence to loud
    wave = torch.stack([wave, torch.zeros(n), 0.01 * torch.randn(n)])
    ref = fe(wave)
    got = DFTLogMel(fe, n)(wave)
    assert got.shape == ref.shape
    scale = max(1.0, float(ref.abs().max()))
    assert float((got - ref).abs().max()) / scale < 1e-5


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_metadata_and_dynamic_batch(fmt, ckpt, tmp_path, capsys):
    files = []
    for i, (sr, sec) in enumerate([(8000, 1.0), (22050, 2.5), (8000, 0.3)]):  # resampled, cropped, padded
        files.append(tmp_path / f"a{i}.wav")
        sf.write(files[-1], noise(sec, sr, seed=i), sr)
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    code = main(["export", f"--ckpt_path={ckpt}", f"--format={fmt}", f"--out={out}", "--check_files", *map(str, files)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 audio files" in printed and "relative max logit error" in printed

    meta = read_metadata(out)
    assert json.loads(meta["class_names"]) == CLASSES
    assert (int(meta["sample_rate"]), int(meta["clip_samples"])) == (8000, 8000)

    loaded = load_checkpoint(ckpt)
    for batch in (1, 5):  # the batch axis is dynamic
        wave = np.stack([noise(1.0, 8000, seed=10 + b)[:, 0] * (b + 1) for b in range(batch)])
        with torch.no_grad():
            ref = loaded.model(loaded.frontend(torch.from_numpy(wave))).numpy()
        got = run_exported(out, fmt, wave)
        assert got.shape == (batch, len(CLASSES))
        np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_failed_parity_fails_the_command(ckpt, tmp_path, monkeypatch, capsys):
    real = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda *a: real(*a) + 0.01)  # an exporter that is slightly off
    out = tmp_path / "model.onnx"
    code = main(["export", f"--ckpt_path={ckpt}", "--format=onnx", f"--out={out}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "differs from the PyTorch model" in err and "synthetic" in err  # no data root in this checkpoint
    assert not out.exists() and out.with_name("model.onnx.failed").exists()
    # a looser tolerance accepts the same error
    assert main(["export", f"--ckpt_path={ckpt}", "--format=onnx", f"--out={out}", "--tolerance=0.05"]) == 0


def test_export_refuses_a_foreign_checkpoint(tmp_path, capsys):
    torch.save({"model": {}}, tmp_path / "other.ckpt")
    code = main(["export", f"--ckpt_path={tmp_path / 'other.ckpt'}", "--format=onnx", f"--out={tmp_path / 'm.onnx'}"])
    assert code == 2 and "not a checkpoint written by 'audiocls fit'" in capsys.readouterr().err


def test_wave_classifier_keeps_the_models_input_transform(ckpt):
    """Backbones with an input transform (AudioClassifier.input_scale/shift) export with it."""
    loaded = load_checkpoint(ckpt)
    if hasattr(loaded.model, "input_scale"):
        delattr(loaded.model, "input_scale")
        delattr(loaded.model, "input_shift")
    loaded.model.register_buffer("input_scale", torch.tensor([0.5, 2.0, 1.0]).view(1, 3, 1, 1))
    loaded.model.register_buffer("input_shift", torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1))
    wave = torch.from_numpy(np.stack([noise(1.0, 8000, seed=s)[:, 0] for s in range(2)]))
    with torch.no_grad():
        ref = loaded.model(loaded.frontend(wave))
        plain = loaded.model.backbone(loaded.frontend(wave))
        got = loaded.wave_classifier()(wave)
    assert not torch.allclose(ref, plain, atol=1e-3)  # the transform matters here
    torch.testing.assert_close(got, ref)


def test_failed_parity_keeps_the_previous_model(ckpt, tmp_path, monkeypatch, capsys):
    """Issue 15 item 4: the new file replaces --out only after the parity check passes."""
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous good model")
    real = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda *a: real(*a) + 0.01)
    assert main(["export", f"--ckpt_path={ckpt}", "--format=onnx", f"--out={out}"]) == 2
    assert out.read_bytes() == b"the previous good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.failed"]  # no partial file


def test_a_crash_mid_export_keeps_the_previous_model(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous good model")

    def crash(loaded, path, **kw):
        Path(path).write_bytes(b"half a model")
        raise KeyboardInterrupt  # as a kill while writing

    monkeypatch.setattr(export, "export_onnx", crash)
    with pytest.raises(KeyboardInterrupt):
        main(["export", f"--ckpt_path={ckpt}", "--format=onnx", f"--out={out}"])
    assert out.read_bytes() == b"the previous good model" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize("bad", ["parent_is_a_file", "out_is_a_folder"])
def test_bad_out_is_one_line_before_the_checkpoint_is_read(bad, ckpt, tmp_path, monkeypatch, capsys):
    """Issue 15 item 5: --out is checked before any work, with one line naming the path."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "file" / "model.onnx" if bad == "parent_is_a_file" else tmp_path / "folder"
    monkeypatch.setattr(export, "load_checkpoint", lambda *a, **k: pytest.fail("the checkpoint was read first"))
    assert main(["export", f"--ckpt_path={ckpt}", "--format=onnx", f"--out={out}"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("audiocls: error:")]
    assert len(lines) == 1 and str(out) in lines[0] and "--out=<file>" in lines[0], lines
