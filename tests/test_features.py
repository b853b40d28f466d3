"""The log-mel frontend: shapes, batch consistency, determinism, gradients, paper defaults."""

from __future__ import annotations

import math

import pytest
import torch

from audiocls.errors import ConfigError
from audiocls.features import FrontendConfig, LogMelFrontend, build_frontend


def _tone(freq: float, sr: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(sr * seconds)) / sr
    return torch.sin(2 * math.pi * freq * t)


def test_paper_defaults_shape_and_fft():
    fe = LogMelFrontend(FrontendConfig(), 44100)
    assert [m.n_fft for m in fe.mels] == [4410] * 3
    assert [m.win_length for m in fe.mels] == [1102, 2205, 4410]
    assert [m.hop_length for m in fe.mels] == [441, 1102, 2205]
    out = fe(torch.randn(2, 44100 * 5))
    assert out.shape == (2, 3, 128, 250) and out.dtype == torch.float32


def test_batched_equals_per_item_and_eval_is_deterministic():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000).eval()
    batch = torch.stack([_tone(440, 8000), _tone(1000, 8000) * 0.1, torch.randn(8000) * 0.01])
    out = fe(batch)
    per_item = torch.cat([fe(b[None]) for b in batch])
    assert torch.allclose(out, per_item, atol=1e-5)
    assert torch.equal(out, fe(batch))


def test_tone_peaks_at_its_mel_bin():
    fe = LogMelFrontend(FrontendConfig(windows_ms=(50.0,), hops_ms=(25.0,), size=None, n_mels=64), 16000)
    spec = fe(_tone(1000, 16000)[None])  # (1, 1, 64, frames)
    peak = spec[0, 0].mean(-1).argmax().item()
    centres = fe.mels[0].mel_scale.fb.argmax(0)  # frequency bin with the largest weight of each mel filter
    freq_of_peak = centres[peak].item() * 16000 / fe.mels[0].n_fft
    assert abs(freq_of_peak - 1000) < 80


def test_gradients_reach_the_waveform():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000)
    wave = torch.randn(2, 8000, requires_grad=True)
    fe(wave).sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0


def test_frontend_runs_in_float32_under_autocast():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(torch.randn(1, 8000).bfloat16())
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "sr", "match"),
    [
        ({"windows_ms": (25.0, 50.0), "hops_ms": (10.0,)}, 8000, "same length"),
        ({"f_max": 8000.0}, 8000, "Nyquist"),
        ({"size": None}, 8000, "hops differ"),
    ],
)
def test_bad_settings_are_named(kwargs, sr, match):
    with pytest.raises(ConfigError, match=match):
        LogMelFrontend(FrontendConfig(**kwargs), sr)
