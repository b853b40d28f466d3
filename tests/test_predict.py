"""``audiocls predict --files``: checkpoints rebuilt alone, sliding windows, per-file errors, JSON/CSV output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.cli import main
from audiocls.commands.scoring import score_wave, window_starts
from audiocls.models.classifier import AudioClassifier
from audiocls.training.checkpoints import load_checkpoint
from tests.conftest import TINY_FRONTEND

CLASSES = ["tone", "chirp_up", "chirp_down", "noise_band"]


def make_checkpoint(
    path: Path,
    *,
    class_names: list[str] = CLASSES,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    frontend: dict | None = None,
    seed: int = 0,
) -> Path:
    """A checkpoint in the layout ``audiocls fit`` writes, with a randomly initialised test_resnet."""
    torch.manual_seed(seed)
    model = AudioClassifier("test_resnet", num_classes=len(class_names), in_chans=3, class_names=class_names)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "datamodule_hyper_parameters": {
                "_class_path": "audiocls.data.synthetic.SyntheticDataModule",
                "sample_rate": sample_rate,
                "clip_seconds": clip_seconds,
                "frontend": dict(frontend or TINY_FRONTEND),
            },
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


def noise(seconds: float, sr: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """(T, channels) float32 of tones in noise, so windows differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (300 + 900 * t / max(seconds, 1e-9)) * t) + 0.1 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


@pytest.mark.parametrize(("n", "clip", "hop"), [(100, 100, 50), (80, 100, 50), (350, 100, 50), (1000, 100, 30)])
def test_window_starts_cover_the_recording(n, clip, hop):
    starts = window_starts(n, clip, hop)
    covered = np.zeros(max(n, clip), bool)
    for s in starts:
        covered[s : s + clip] = True
    assert covered[:n].all()
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(s + clip <= max(n, clip) for s in starts)  # no window runs past the end
    assert all(b - a <= hop for a, b in zip(starts, starts[1:], strict=False))


def test_checkpoint_rebuilds_model_and_frontend(ckpt):
    loaded = load_checkpoint(ckpt)
    assert loaded.class_names == CLASSES
    assert (loaded.sample_rate, loaded.clip_samples) == (8000, 8000)
    assert loaded.frontend(torch.zeros(1, 8000)).shape == (1, 3, 32, 64)
    assert not loaded.model.training


def test_long_clip_gives_one_averaged_answer(ckpt):
    """A clip 3x the clip length, tiled from one clip: every window equals that clip, so does the mean."""
    loaded = load_checkpoint(ckpt)
    one = noise(1.0, 8000)[:, 0]
    probs_one, windows_one, _ = score_wave(loaded, one)
    assert windows_one.shape == (1, 4)
    slightly_long = np.concatenate([one[:100], one, one[:200]])  # within SLACK: one centre crop, no sliding
    probs_c, windows_c, starts_c = score_wave(loaded, slightly_long)
    assert starts_c.tolist() == [0] and windows_c.shape == (1, 4)
    np.testing.assert_allclose(probs_c, score_wave(loaded, slightly_long[150:8150])[0], atol=1e-6)

    probs, window_probs, starts = score_wave(loaded, np.tile(one, 3), hop_seconds=1.0)
    assert starts.tolist() == [0, 8000, 16000]
    np.testing.assert_allclose(window_probs, np.repeat(probs_one[None], 3, 0), atol=1e-5)
    np.testing.assert_allclose(probs, probs_one, atol=1e-5)

    # any hop: the answer is the mean of the windows, and each window is the model on that segment alone
    long = noise(3.0, 8000, seed=1)[:, 0]
    probs, window_probs, starts = score_wave(loaded, long, hop_seconds=0.4, batch_size=2)
    assert starts.tolist() == [0, 3200, 6400, 9600, 12800, 16000]
    np.testing.assert_allclose(probs, window_probs.mean(0), atol=1e-6)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    alone = score_wave(loaded, long[9600:17600])[0]
    np.testing.assert_allclose(window_probs[3], alone, atol=1e-5)
    assert not np.allclose(window_probs[0], window_probs[-1], atol=1e-4)  # windows really differ


def test_json_and_csv_outputs_parse(ckpt, tmp_path, capsys):
    sf.write(tmp_path / "long.flac", noise(3.0, 22050, channels=2), 22050)  # other rate, stereo, FLAC
    sf.write(tmp_path / "short.wav", noise(0.4, 8000), 8000)
    out = tmp_path / "pred.json"
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path), "--format=json", f"--out={out}"])
    assert code == 0
    results = {Path(r["file"]).name: r for r in json.loads(out.read_text())}
    assert set(results) == {"long.flac", "short.wav"}
    long = results["long.flac"]
    assert long["duration_s"] == pytest.approx(3.0, abs=1e-3)
    assert len(long["windows"]) == 5  # 1 s windows every 0.5 s
    assert [t["label"] for t in long["top"]] and {t["label"] for t in long["top"]} <= set(CLASSES)
    probs = [t["probability"] for t in long["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-4)
    mean = {c: np.mean([next(t["probability"] for t in w["top"] if t["label"] == c) for w in long["windows"]])
            for c in CLASSES}  # fmt: skip
    for t in long["top"]:
        assert t["probability"] == pytest.approx(mean[t["label"]], abs=1e-5)

    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "long.flac"), "--format=csv",
                 "--top_k=2", "--per_window"])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0
    assert [r["scope"] for r in rows] == ["file"] * 2 + ["window"] * 10
    assert rows[0]["label"] == long["top"][0]["label"]
    assert float(rows[0]["probability"]) == pytest.approx(long["top"][0]["probability"], abs=1e-5)


def test_bad_files_are_reported_and_do_not_stop_the_batch(ckpt, tmp_path, capsys):
    sf.write(tmp_path / "good.wav", noise(1.0, 8000), 8000)
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    files = [tmp_path / n for n in ("garbage.wav", "good.wav", "empty.wav", "missing.ogg")]
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", *map(str, files), "--format=json"])
    captured = capsys.readouterr()
    assert code == 1
    results = json.loads(captured.out)
    assert [Path(r["file"]).name for r in results] == [f.name for f in files]
    assert "top" in results[1] and "error" not in results[1]
    for r in (results[0], results[2], results[3]):
        assert "error" in r and Path(r["file"]).name in r["error"]
    assert "3 of 4 files failed" in captured.err


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (torch.save({"state_dict": {}}, p), p)[1], "not a checkpoint written by 'audiocls fit'"),
        (lambda p: (p.write_text("junk"), p)[1], "cannot read checkpoint"),
    ],
    ids=["missing", "other-tool", "corrupt"],
)
def test_bad_checkpoint_is_one_clear_line(make, needle, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", noise(1.0, 8000), 8000)
    ckpt = make(tmp_path / "x.ckpt")
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "a.wav")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and "x.ckpt" in err and "Traceback" not in err


def test_empty_folder_is_an_error(ckpt, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "nothing")]) == 2
    assert "holds no audio file" in capsys.readouterr().err


@pytest.mark.slow
def test_checkpoint_from_fit_predicts_files(tiny_args, tiny_root, tmp_path, capsys):
    """The real path: ``audiocls fit`` writes the checkpoint; ``audiocls predict`` reads it."""
    assert main(["fit", *tiny_args, "--trainer.max_epochs=2"]) == 0
    ckpt = tmp_path / "runs" / "audiocls" / "version_0" / "checkpoints" / "last.ckpt"
    clip = sorted((tiny_root / "audio").glob("*.wav"))[0]
    wave, sr = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "x3.wav", np.tile(wave, 3), sr)  # 3x the clip length
    capsys.readouterr()
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(clip), str(tmp_path / "x3.wav"),
                 "--hop_seconds=1.0", "--format=json"])  # fmt: skip
    assert code == 0
    one, three = json.loads(capsys.readouterr().out)
    assert len(three["windows"]) == 3
    assert [t["label"] for t in three["top"]] == [t["label"] for t in one["top"]]
    for a, b in zip(three["top"], one["top"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)

    # one meaning: 'audiocls predict' is the file command; LightningCLI's dataset predict is not a subcommand
    with pytest.raises(SystemExit) as exc:
        main(["predict", *tiny_args, f"--ckpt_path={ckpt}"])
    assert exc.value.code == 2 and "--files" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["parent_is_a_file", "out_is_a_folder"])
def test_bad_out_is_one_line_before_any_file_is_scored(bad, ckpt, tmp_path, monkeypatch, capsys):
    """Issue 15 item 5: --out is checked before the work starts, with one line naming the path and the fix."""
    from audiocls.commands import predict

    sf.write(tmp_path / "a.wav", noise(1.0, 8000), 8000)
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "file" / "pred.json" if bad == "parent_is_a_file" else tmp_path / "folder"
    monkeypatch.setattr(predict, "predict_files", lambda *a, **k: pytest.fail("files were scored first"))
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "a.wav"), f"--out={out}"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("audiocls: error:")]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and str(out) in lines[0] and "--out=<file>" in lines[0], lines


def test_predict_out_is_written_atomically_and_the_printed_path_is_the_file(ckpt, tmp_path, monkeypatch, capsys):
    sf.write(tmp_path / "a.wav", noise(1.0, 8000), 8000)
    out = tmp_path / "new" / "pred.json"  # a missing parent is made
    args = ["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path / "a.wav"), "--format=json", f"--out={out}"]
    assert main(args) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    good = out.read_text()
    assert json.loads(good)[0]["file"].endswith("a.wav")

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audiocls.files.os.fsync", broken)
    with pytest.raises(OSError):
        main(args)
    assert out.read_text() == good and [p.name for p in out.parent.iterdir()] == ["pred.json"]
