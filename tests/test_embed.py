"""``audiocls embed``: pooled penultimate features per file, windows averaged, written atomically."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.cli import main
from audiocls.commands import embed
from audiocls.commands.scoring import map_windows, score_wave
from audiocls.data.io import load_audio
from audiocls.training.checkpoints import load_checkpoint
from tests.test_predict import make_checkpoint, noise


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


def test_embedding_is_what_the_classifier_layer_sees(ckpt):
    """The vector times the classifier layer gives the model's logits: it is the penultimate feature."""
    loaded = load_checkpoint(ckpt)
    spec = loaded.frontend(torch.from_numpy(noise(1.0, 8000)[:, 0])[None])
    with torch.no_grad():
        features = embed.penultimate(loaded, spec)
        logits = loaded.model(spec)
    assert features.shape == (1, loaded.model.backbone.num_features)
    torch.testing.assert_close(loaded.model.backbone.get_classifier()(features), logits)


def test_long_files_average_the_windows_as_predict_does(ckpt, tmp_path):
    loaded = load_checkpoint(ckpt)
    sf.write(tmp_path / "long.wav", noise(3.0, 8000)[:, 0], 8000)
    wave = load_audio(tmp_path / "long.wav", 8000)  # as decoded (16-bit WAV)
    embeddings, names, errors = embed.embed_files(loaded, [tmp_path / "long.wav"], hop_seconds=1.0)
    mean, per_window, starts = map_windows(loaded, wave, lambda s: embed.penultimate(loaded, s), hop_seconds=1.0)
    assert starts.tolist() == [0, 8000, 16000] and per_window.shape[0] == 3
    np.testing.assert_allclose(embeddings[0], per_window.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(per_window[0], per_window[1])  # windows differ, so the mean is a real average
    # score_wave, now on map_windows, still gives the same probabilities as before (softmax of the logits)
    probs, _, _ = score_wave(loaded, wave, hop_seconds=1.0)
    assert probs.shape == (4,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert names == [str(tmp_path / "long.wav")] and errors == []


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_outputs_carry_the_file_names(suffix, ckpt, tmp_path, capsys):
    for i in range(2):
        sf.write(tmp_path / f"{i}.wav", noise(1.0, 8000, seed=i), 8000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    out = tmp_path / "out" / f"emb{suffix}"
    files = [str(tmp_path / n) for n in ("0.wav", "bad.wav", "1.wav")]
    assert main(["embed", f"--ckpt_path={ckpt}", "--files", *files, f"--out={out}"]) == 1  # one file failed
    err = capsys.readouterr().err
    assert f"wrote {out}" in err and "1 of 3 files failed" in err
    if suffix == ".npy":
        emb = np.load(out)
        names = (tmp_path / "out" / "emb.files.txt").read_text().splitlines()
    elif suffix == ".npz":
        data = np.load(out, allow_pickle=False)
        emb, names = data["embeddings"], data["files"].tolist()
    else:
        rows = list(csv.reader(out.open()))
        assert rows[0][:2] == ["file", "e0"]
        emb, names = np.array([[float(v) for v in r[1:]] for r in rows[1:]]), [r[0] for r in rows[1:]]
    assert names == [files[0], files[2]]
    assert emb.shape == (2, load_checkpoint(ckpt).model.backbone.num_features) and emb.dtype.kind == "f"
    assert not np.allclose(emb[0], emb[1])


def test_bad_out_suffix_and_folder_fail_before_work(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(embed, "embed_files", lambda *a, **k: pytest.fail("files were embedded first"))
    sf.write(tmp_path / "a.wav", noise(1.0, 8000), 8000)
    (tmp_path / "folder").mkdir()
    for out, needle in ((tmp_path / "emb.parquet", "must end in .npy"), (tmp_path / "folder", "folder")):
        assert main(["embed", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "a.wav"), f"--out={out}"]) == 2
        assert needle in capsys.readouterr().err


def test_same_class_embeddings_are_nearer_after_a_short_fit(tiny_args, tiny_root, tmp_path):
    """On the held-out fold, a clip's nearest other clip (cosine) is mostly of its own class."""
    assert main(["fit", *tiny_args, "--trainer.max_epochs=4", "--test_after_fit=false"]) == 0
    ckpt = tmp_path / "runs" / "audiocls" / "version_0" / "checkpoints" / "last.ckpt"
    files = sorted((tiny_root / "audio").glob("1-*.wav"))  # fold 1: not trained on
    labels = np.array([int(f.stem.rsplit("-", 1)[1]) for f in files])
    out = tmp_path / "emb.npy"
    assert main(["embed", f"--ckpt_path={ckpt}", "--files", *map(str, files), f"--out={out}"]) == 0
    emb = np.load(out)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(files), dtype=bool)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.15  # measured: 0.63 vs 0.26
