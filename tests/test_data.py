"""Audio I/O, the decoded cache, the synthetic set and the split."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.data import cache as io  # the cache decodes through its own load_audio name
from audiocls.data.cache import DecodedCache
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.io import load_audio, pad_or_crop, sliding_windows
from audiocls.data.synthetic import generate_synthetic
from audiocls.errors import AudioLoadError, ConfigError
from tests.conftest import TINY_FRONTEND


def _digest(root):
    h = hashlib.sha1()
    for f in sorted((root / "audio").iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_in_esc50_layout(tmp_path):
    a = generate_synthetic(tmp_path / "a", num_classes=3, clips_per_fold=2, sample_rate=8000, seconds=0.5)
    b = generate_synthetic(tmp_path / "b", num_classes=3, clips_per_fold=2, sample_rate=8000, seconds=0.5)
    c = generate_synthetic(tmp_path / "c", num_classes=3, clips_per_fold=2, sample_rate=8000, seconds=0.5, seed=1)
    assert _digest(a) == _digest(b) != _digest(c)
    header = (a / "meta" / "esc50.csv").read_text().splitlines()[0]
    assert header == "filename,fold,target,category,esc10,src_file,take"
    assert len(list((a / "audio").glob("*.wav"))) == 3 * 2 * 5


def test_synthetic_classes_differ(tiny_root):
    """Clips of different classes have different spectral centroids on average: the classes are real."""
    dm = ESC50DataModule(tiny_root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny())
    centroids = {}
    for clip in dm.list_clips():
        wave = load_audio(clip.path, 8000)
        mag = np.abs(np.fft.rfft(wave))
        centroids.setdefault(clip.label, []).append((mag * np.arange(len(mag))).sum() / mag.sum())
    means = sorted(np.mean(v) for v in centroids.values())
    assert len(means) == 4 and min(np.diff(means)) > 5


def _tiny():
    from audiocls.audio.frontend import FrontendConfig

    return FrontendConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_FRONTEND.items()})


def test_load_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.flac", stereo, 16000)
    wave = load_audio(tmp_path / "s.flac", 8000)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_load_audio_bad_file_names_it(tmp_path, content):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    with pytest.raises(AudioLoadError, match="bad.wav"):
        load_audio(bad, 8000)


def test_pad_or_crop():
    w = np.arange(10, dtype=np.float32)
    assert pad_or_crop(w, 14).tolist() == [*range(10), 0, 0, 0, 0]
    assert pad_or_crop(w, 4).tolist() == [3, 4, 5, 6]  # centre crop
    assert pad_or_crop(w, 4, offset=0).tolist() == [0, 1, 2, 3]


def test_cache_roundtrip_and_rebuild_on_change(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], np.full(100 + i, 0.25 * (i + 1), np.float32), 8000)
    cache = DecodedCache(files, 8000, tmp_path / "cache")
    cache.build()
    assert [cache.length(i) for i in range(3)] == [100, 101, 102]
    assert np.allclose(cache[2], 0.75, atol=1e-4)
    key = cache.key()
    sf.write(files[1], np.zeros(50, np.float32), 8000)
    changed = DecodedCache(files, 8000, tmp_path / "cache")
    assert changed.key() != key and not changed.complete
    assert changed.length(1) == 50


def test_split_is_disjoint_stratified_and_holds_out_the_fold(tiny_root):
    dm = ESC50DataModule(tiny_root, fold=2, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), val_fraction=0.34)
    clips = dm.list_clips()
    split = dm.split(clips)
    sets = {k: set(v) for k, v in split.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert len(sets["train"] | sets["val"] | sets["test"]) == len(clips)
    assert {clips[i].fold for i in sets["test"]} == {2}
    assert sorted(clips[i].label for i in sets["val"]) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4


def test_bad_fold_and_batch_size_are_refused(tiny_root):
    with pytest.raises(ConfigError, match="fold=7"):
        ESC50DataModule(tiny_root, fold=7, sample_rate=8000, clip_seconds=1.0, frontend=_tiny())
    dm = ESC50DataModule(tiny_root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), batch_size=500)
    with pytest.raises(ConfigError, match="batch_size=500"):
        dm.setup("fit")


def test_batches_become_spectrograms_on_the_device(tiny_root, monkeypatch):
    """The device hook moves the frontend (its window and filterbank buffers) to the device the batch arrived
    on before it computes: recorded through the frontend's ``.to`` (CPU-only machines have no second device)."""
    dm = ESC50DataModule(tiny_root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    wave, y = next(iter(dm.train_dataloader()))
    assert wave.shape == (4, 8000) and y.dtype == torch.int64
    moves, real_to, real_forward = [], dm.frontend.to, dm.frontend.forward

    def to(*args, **kwargs):
        moves.append(torch.device(args[0] if args else kwargs["device"]))
        return real_to(*args, **kwargs)

    def forward(*args, **kwargs):
        assert moves, "the frontend computed before it was moved to the batch's device"
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(dm.frontend, "to", to)
    monkeypatch.setattr(dm.frontend, "forward", forward)
    spec, y2 = dm.on_after_batch_transfer((wave, y), 0)
    assert moves == [wave.device]
    assert spec.shape == (4, 3, 32, 64) and torch.equal(y, y2) and spec.device == wave.device
    assert all(b.device == wave.device for b in dm.frontend.buffers())


# --- formats, bad files, the cache build, sliding windows ---------------------------------------------------


@pytest.mark.parametrize(
    ("subtype", "sr", "channels"),
    [("PCM_U8", 8000, 1), ("PCM_16", 22050, 2), ("PCM_24", 96000, 1), ("FLOAT", 48000, 2), ("PCM_32", 44100, 1)],
)
def test_load_audio_any_depth_rate_and_channels(tmp_path, subtype, sr, channels):
    """8/16/24/32-bit and float files at 8-96 kHz, mono or stereo: same tone, same length at the target rate."""
    t = np.arange(int(sr * 0.5)) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "x.wav", np.stack([tone] * channels, axis=1), sr, subtype=subtype)
    wave = load_audio(tmp_path / "x.wav", 16000)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    ref = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    tol = 0.02 if subtype == "PCM_U8" else 2e-3
    assert np.abs(wave[200:-200] - ref[200:-200]).max() < tol


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_load_audio_refuses_non_finite_samples(tmp_path, value):
    x = np.zeros(800, np.float32)
    x[100] = value
    sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match=r"nan\.wav.*NaN or infinite"):
        load_audio(tmp_path / "nan.wav", 8000)


def test_load_audio_zero_length_and_truncated(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(AudioLoadError, match="empty.wav"):
        load_audio(tmp_path / "empty.wav", 8000)
    sf.write(tmp_path / "full.flac", np.random.default_rng(0).uniform(-1, 1, 8000).astype(np.float32), 8000)
    (tmp_path / "cut.flac").write_bytes((tmp_path / "full.flac").read_bytes()[:200])
    with pytest.raises(AudioLoadError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac", 8000)


def test_sliding_windows_cover_the_clip():
    wave = np.arange(100, dtype=np.float32)
    win = sliding_windows(wave, total=100, window=40, hop=20)
    assert win.shape == (4, 40)
    assert win[:, 0].tolist() == [0, 20, 40, 60] and win[-1, -1] == 99
    assert sliding_windows(wave[:50], total=100, window=40, hop=30).shape == (3, 40)  # padded to 100 first


def _tree(root, clips_per_fold=2, classes=3, sr=8000, seconds=1.0, bad=()):
    """A tiny ESC-50 layout with tones (class = pitch); ``bad`` file names get corrupt bytes."""
    import csv

    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for fold in range(1, 6):
        for label in range(classes):
            for k in range(clips_per_fold):
                name = f"{fold}-{label}{k}-A-{label}.wav"
                t = np.arange(int(sr * seconds)) / sr
                sf.write(root / "audio" / name, 0.3 * np.sin(2 * np.pi * 300 * (label + 1) * t), sr)
                rows.append([name, fold, label, f"c{label}", "True", f"{fold}{label}{k}", "A"])
    for name in bad:
        (root / "audio" / name).write_bytes(b"garbage" * 20)
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return root


def test_bad_files_stop_before_training_naming_them(tmp_path):
    root = _tree(tmp_path / "ds", bad=["2-00-A-0.wav", "4-11-A-1.wav"])
    dm = ESC50DataModule(root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), batch_size=2, num_workers=0)
    dm.prepare_data()  # the build records the failures, it does not raise halfway
    with pytest.raises(AudioLoadError, match=r"2 of 30 audio files.*2-00-A-0\.wav.*4-11-A-1\.wav.*skip_bad_files"):
        dm.setup("fit")


def test_skip_bad_files_leaves_them_out_with_a_warning(tmp_path, caplog):
    root = _tree(tmp_path / "ds", bad=["2-00-A-0.wav", "1-21-A-2.wav"])
    dm = ESC50DataModule(
        root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), batch_size=2, num_workers=0, skip_bad_files=True
    )
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert "skipping 2 of 30" in caplog.text and "1-21-A-2.wav" in caplog.text
    assert sum(len(s) for s in dm.splits.values()) == 28 and len(dm.splits["test"]) == 5
    for name, split in dm.splits.items():  # no empty (bad) entry is served
        assert all(split.cache.length(i) == 8000 for i in split.indices), name


def test_fit_with_a_bad_file_fails_before_the_first_step(tmp_path, tiny_args, capsys):
    from audiocls.cli import main

    root = _tree(tmp_path / "ds", classes=4, clips_per_fold=3, bad=["3-10-A-1.wav"])
    args = [a for a in tiny_args if not a.startswith(("--data=", "--data.root", "--data.num_classes", "--data.clips"))]
    args = [a for a in args if not a.startswith("--data.seconds")]
    code = main(
        [
            "fit",
            *args,
            "--data=audiocls.data.esc50.ESC50DataModule",
            f"--data.root={root}",
            "--data.clip_seconds=1",
            "--trainer.max_epochs=1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("audiocls: error:")]
    assert len(errors) == 1 and "3-10-A-1.wav" in errors[0] and "skip_bad_files" in errors[0]
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


def test_cache_build_is_atomic_when_killed(tmp_path, monkeypatch):
    root = _tree(tmp_path / "ds", clips_per_fold=1)
    files = sorted((root / "audio").iterdir())
    calls = {"n": 0}
    real = io.load_audio

    def dying(path, sr):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # the process is killed mid-build
        return real(path, sr)

    monkeypatch.setattr(io, "load_audio", dying)
    cache = DecodedCache(files, 8000, tmp_path / "cache", workers=1)
    with pytest.raises(KeyboardInterrupt):
        cache.build()
    assert not cache.complete and list((tmp_path / "cache").iterdir()) == []  # no half cache, no temp folder
    monkeypatch.setattr(io, "load_audio", real)
    cache.build()
    assert cache.complete and [cache.length(i) for i in range(len(files))] == [8000] * len(files)


def test_cache_is_reused_and_parallel_build_keeps_order(tmp_path, monkeypatch):
    files = []
    for i in range(12):
        files.append(tmp_path / f"{i:02d}.wav")
        sf.write(files[-1], np.full(100 + 10 * i, i / 20, np.float32), 8000)
    cache = DecodedCache(files, 8000, tmp_path / "cache", workers=4)
    cache.build()
    assert [cache.length(i) for i in range(12)] == [100 + 10 * i for i in range(12)]
    assert all(np.allclose(cache[i], i / 20, atol=1e-4) for i in range(12))
    monkeypatch.setattr(io, "load_audio", lambda *a: pytest.fail("a warm cache must not decode again"))
    again = DecodedCache(files, 8000, tmp_path / "cache")
    assert again.complete and again.length(11) == 210


def test_windowed_evaluation_batches(tmp_path):
    """Eval clips longer than clip_seconds become (B, W, T) windows and (B, W, C, F, frames) spectrograms."""
    root = _tree(tmp_path / "ds", seconds=3.0)
    dm = ESC50DataModule(
        root,
        sample_rate=8000,
        clip_seconds=1.0,
        eval_seconds=3.0,
        eval_hop_seconds=0.5,
        frontend=_tiny(),
        batch_size=2,
        num_workers=0,
    )
    dm.setup("fit")
    wave, _ = next(iter(dm.train_dataloader()))
    assert wave.shape == (2, 8000)
    wave, y = next(iter(dm.val_dataloader()))
    assert wave.shape == (len(y), 5, 8000)
    clip = dm.splits["val"].cache[dm.splits["val"].indices[0]]
    assert torch.equal(wave[0, 2], torch.from_numpy(np.array(clip[8000:16000])))  # window 2 starts at 1 s
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape == (len(y), 5, 3, 32, 64)
    assert torch.allclose(spec[1, 3], dm.frontend(wave[1, 3:4])[0], atol=1e-5)  # batched == per window


def test_windowed_evaluation_with_the_tiny_model(tmp_path):
    """The tiny model scores windowed spectrograms: averaged logits (B, num_classes)."""
    from audiocls.models.classifier import AudioClassifier

    root = _tree(tmp_path / "ds", seconds=2.0)
    dm = ESC50DataModule(
        root, sample_rate=8000, clip_seconds=1.0, eval_seconds=2.0, frontend=_tiny(), batch_size=2, num_workers=0
    )
    dm.setup("test")
    model = AudioClassifier("test_resnet", num_classes=dm.num_classes, in_chans=dm.in_chans).eval()
    wave, y = next(iter(dm.test_dataloader()))
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape[:2] == (len(y), 2)
    with torch.no_grad():
        per_window = model(spec.flatten(0, 1)).view(len(y), 2, -1)
        logits = model(spec)
    assert logits.shape == (len(y), dm.num_classes)
    assert torch.allclose(logits, per_window.mean(1), atol=1e-5)
    varied = torch.randn(2, 3, *spec.shape[2:])  # windows that differ, so the mean is not any one window
    with torch.no_grad():
        means = torch.stack([model(varied[:, w]) for w in range(3)]).mean(0)
        assert torch.allclose(model(varied), means, atol=1e-5)
        assert not torch.allclose(model(varied), model(varied[:, 0]), atol=1e-3)


def test_eval_seconds_shorter_than_clip_is_refused(tiny_root):
    with pytest.raises(ConfigError, match="eval_seconds=0.5"):
        ESC50DataModule(tiny_root, sample_rate=8000, clip_seconds=1.0, eval_seconds=0.5, frontend=_tiny())


def test_atomic_folder_leaves_nothing_on_failure_and_keeps_a_folder_finished_meanwhile(tmp_path):
    from audiocls.files import atomic_folder

    target = tmp_path / "built"
    with pytest.raises(RuntimeError), atomic_folder(target, lambda: False) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(target, lambda: False) as tmp:
        (tmp / "done").write_text("mine")
    assert (target / "done").read_text() == "mine"
    with atomic_folder(target, lambda: (target / "done").is_file()) as tmp:  # the rename fails: theirs is kept
        (tmp / "done").write_text("late")
    assert (target / "done").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["built"]
