"""One home for decode: ``decode_audio`` (bytes, for ``audiocls serve``) is ``load_audio`` (a path); a sample rate
with no small common factor is resampled without a gigabyte kernel; ``score_waves`` batches what ``score_wave``
scores one by one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from audiocls.commands.scoring import score_wave, score_waves
from audiocls.data.io import MAX_KERNEL, decode_audio, load_audio, resample
from audiocls.errors import AudioLoadError, AudioTooLongError
from audiocls.training.checkpoints import load_checkpoint
from tests.test_predict import make_checkpoint, noise


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_decode_audio_of_the_bytes_is_load_audio_of_the_file(tmp_path, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, noise(0.7, 16000, channels=2), 16000, format=fmt)
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), 8000), load_audio(path, 8000))


def test_decode_audio_names_empty_undecodable_and_too_long_audio():
    with pytest.raises(AudioLoadError, match="empty"):
        decode_audio(b"", 8000)
    with pytest.raises(AudioLoadError, match="cannot decode upload: Format not recognised"):
        decode_audio(b"not audio at all", 8000)  # soundfile's words, without the BytesIO object's repr
    buf = io.BytesIO()
    sf.write(buf, noise(3.0, 8000), 8000, format="WAV")
    with pytest.raises(AudioTooLongError, match="3.0 s long, over the limit of 2 s"):
        decode_audio(buf.getvalue(), 8000, max_seconds=2)
    buf = io.BytesIO()
    sf.write(buf, np.zeros((192000, 8), np.int16), 192000, format="WAV")  # 1 s, but 8 channels at 192 kHz
    with pytest.raises(AudioTooLongError, match="8 channels at 192000 Hz"):
        decode_audio(buf.getvalue(), 8000, max_seconds=2)


@pytest.mark.parametrize("orig", [96001, 47999])
def test_a_rate_with_no_common_factor_is_resampled_by_fft(orig):
    assert orig * 44100 > MAX_KERNEL  # torchaudio's kernel would be (44100, orig): gigabytes
    t = np.arange(orig) / orig
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), orig, 44100)
    want = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    assert out.shape == (44100,) and np.abs(out - want).max() < 1e-4


def test_score_waves_batches_what_score_wave_scores_alone(tmp_path):
    loaded = load_checkpoint(make_checkpoint(tmp_path / "m.ckpt"))
    waves = [noise(s, 8000, seed=i)[:, 0] for i, s in enumerate((0.5, 1.0, 3.2))]
    together = score_waves(loaded, waves, hop_seconds=[None, None, 0.7], batch_size=3)
    for wave, hop, (probs, per_window, starts) in zip(waves, [None, None, 0.7], together, strict=True):
        p, w, s = score_wave(loaded, wave, hop_seconds=hop)
        np.testing.assert_allclose(probs, p, atol=1e-6)
        np.testing.assert_allclose(per_window, w, atol=1e-6)
        np.testing.assert_array_equal(starts, s)
