"""Audio I/O, the decoded cache, the synthetic set and the split."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.io import DecodedCache, load_audio, pad_or_crop
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
    from audiocls.features import FrontendConfig

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


def test_batches_become_spectrograms_on_the_device(tiny_root):
    dm = ESC50DataModule(tiny_root, sample_rate=8000, clip_seconds=1.0, frontend=_tiny(), batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    wave, y = next(iter(dm.train_dataloader()))
    assert wave.shape == (4, 8000) and y.dtype == torch.int64
    spec, y2 = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape == (4, 3, 32, 64) and torch.equal(y, y2)
