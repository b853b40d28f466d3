"""Spectral pitch shift and time stretch (augment.pitch_time_mode: spectral): tones move by their interval,
content stretches by its rate, and 0 semitones / rate 1 is the plain frontend."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audiocls.audio.augment import AugmentConfig, WaveAugment
from audiocls.audio.frontend import FrontendConfig, LogMelFrontend
from audiocls.audio.spectral import PitchTime, shift_power, stretch_frames, warp_filterbank
from audiocls.errors import ConfigError

SR = 16000


def _tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(SR * seconds)) / SR)


def _frontend(**kw) -> LogMelFrontend:
    return LogMelFrontend(FrontendConfig(**{"windows_ms": (64.0,), "hops_ms": (16.0,), "size": None, **kw}), SR)


def _pt(semis, rates) -> PitchTime:
    return PitchTime(torch.tensor(semis, dtype=torch.float64), torch.tensor(rates, dtype=torch.float64))


@pytest.mark.parametrize("semitones", [2.0, -2.0, 5.0, -7.0])
def test_spectral_pitch_shift_moves_a_tone_by_its_mel_bins(semitones):
    fe = _frontend()
    mel_of = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731  (HTK, the frontend's scale)
    step = mel_of(SR / 2) / (fe.config.n_mels + 1)  # mel bins are equally spaced on the mel scale
    expected = (mel_of(1000 * 2 ** (semitones / 12)) - mel_of(1000)) / step
    peak = lambda spec: int(spec[0, 0].mean(-1).argmax())  # noqa: E731
    plain = peak(fe(_tone(1000)[None]))
    shifted = peak(fe(_tone(1000)[None], _pt([semitones], [1.0])))
    assert shifted - plain == pytest.approx(expected, abs=1)
    assert abs(expected) >= 3  # the check can tell a shift from none
    assert shifted == pytest.approx(peak(fe(_tone(1000 * 2 ** (semitones / 12))[None])), abs=1)


def test_warped_filterbank_equals_shifting_the_power():
    fb = _frontend().fb
    power = torch.rand(7, fb.shape[0], dtype=torch.float64)
    for semitones in (2.0, -2.0, 0.5):
        ours = power @ warp_filterbank(fb.double(), semitones)
        assert torch.allclose(ours, shift_power(power, semitones) @ fb.double(), rtol=1e-10)
    assert torch.equal(warp_filterbank(fb, 0.0), fb)


@pytest.mark.parametrize("rate", [1.25, 0.8])
def test_time_stretch_changes_the_content_length_by_its_rate(rate):
    fe = _frontend(windows_ms=(25.0,), hops_ms=(10.0,), n_mels=64)
    wave = torch.zeros(1, 2 * SR)
    wave[0, :SR] = _tone(800)  # 1 s of tone, then 1 s of silence
    fill = math.log(fe.config.eps)
    length = lambda spec: int((spec[0, 0].amax(0) > fill + 3).sum())  # noqa: E731  frames with sound
    plain, stretched = fe(wave), fe(wave, _pt([0.0], [rate]))
    assert stretched.shape == plain.shape
    assert length(stretched) == pytest.approx(length(plain) / rate, abs=2)
    if rate > 1:  # faster: silence after the shorter content, as the vocoder path's zero padding
        assert torch.allclose(stretched[0, 0, :, -20:], torch.full((64, 20), fill), atol=1e-4)


@pytest.mark.parametrize("frames", [441, 201, 101, 37])
def test_identity_stretch_is_the_resize(frames):
    spec = torch.randn(3, 128, frames) * 4 - 8
    ref = F.interpolate(spec[:, None], size=(128, 250), mode="bilinear", align_corners=False, antialias=True)[:, 0]
    assert (stretch_frames(spec, torch.ones(3), 250, -13.8) - ref).abs().max() < 1e-5


def test_identity_pitch_time_is_the_plain_frontend_and_clips_are_independent():
    fe = LogMelFrontend(FrontendConfig.paper(frames=60), SR)
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(4, SR, generator=gen) * 0.1 + _tone(440)
    plain = fe(wave)
    assert (fe(wave, _pt([0.0] * 4, [1.0] * 4)) - plain).abs().max() < 1e-5
    mixed = fe(wave, _pt([0.0, 2.0, 0.0, -1.0], [1.0, 1.1, 0.9, 1.0]))
    assert (mixed[0] - plain[0]).abs().max() < 1e-5  # untouched clips keep the plain output
    assert (mixed[1] - plain[1]).abs().max() > 0.1 and (mixed[2] - plain[2]).abs().max() > 0.1
    for i, (s, r) in enumerate([(0.0, 1.0), (2.0, 1.1), (0.0, 0.9), (-1.0, 1.0)]):  # batched == per clip
        assert torch.allclose(fe(wave[i : i + 1], _pt([s], [r]))[0], mixed[i], atol=1e-4)
    grouped = LogMelFrontend(FrontendConfig.paper(frames=60), SR, chunk_frames=10**9)  # the whole-batch path
    assert torch.allclose(grouped(wave, _pt([0.0, 2.0, 0.0, -1.0], [1.0, 1.1, 0.9, 1.0])), mixed, atol=1e-4)


def test_spectral_mode_draws_like_the_vocoder_and_hands_them_to_the_frontend():
    cfg = dict(pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2), pitch_time_p=0.5, gain_db=3.0)
    wave = _tone(500, 0.25)[None].repeat(16, 1)
    torch.manual_seed(0)
    vocoder = WaveAugment(AugmentConfig(**cfg, pitch_time_mode="vocoder")).draw(16, wave.device)
    torch.manual_seed(0)
    aug = WaveAugment(AugmentConfig(**cfg, pitch_time_mode="spectral"))
    out, pt = aug.with_pitch_time(wave)
    chosen, rates, semis = vocoder
    assert torch.equal(pt.rates[chosen], rates) and torch.equal(pt.semitones[chosen], semis)
    others = torch.ones(16, dtype=torch.bool).index_fill(0, chosen, False)
    assert torch.all(pt.rates[others] == 1) and torch.all(pt.semitones[others] == 0)
    ratio = out.norm(dim=1) / wave.norm(dim=1)  # gain only: the waveform keeps its pitch and length
    assert torch.allclose(out / ratio[:, None], wave, atol=1e-5)
    with pytest.raises(RuntimeError, match="with_pitch_time"):
        aug(wave)
    assert aug.eval().with_pitch_time(wave) == (wave, None)
    with pytest.raises(ConfigError, match="pitch_time_mode"):
        WaveAugment(AugmentConfig(pitch_time_mode="phase"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_spectral_pitch_time_agree():
    fe = LogMelFrontend(FrontendConfig.paper(), 44100)
    wave = torch.randn(4, 5 * 44100, generator=torch.Generator().manual_seed(0)) * 0.1
    pt = _pt([0.0, 2.0, -2.0, 1.0], [1.0, 1.15, 0.9, 1.0])
    cpu = fe(wave, pt)
    cuda = fe.cuda()(wave.cuda(), PitchTime(pt.semitones.cuda(), pt.rates.cuda())).cpu()
    assert (cpu - cuda).abs().max() < 2e-3


def test_datamodule_hands_spectral_draws_to_the_frontend_in_training_only(tiny_root):
    from types import SimpleNamespace

    from tests.conftest import tiny_datamodule

    aug = AugmentConfig(pitch_shift=(2.0, 2.0), time_stretch=(1.2, 1.2), pitch_time_mode="spectral")
    dm = tiny_datamodule(tiny_root, aug)
    wave, y = torch.randn(4, 8000) * 0.1, torch.arange(4)
    dm.trainer = SimpleNamespace(training=False)
    plain, _ = dm.on_after_batch_transfer((wave, y), 0)
    dm.trainer = SimpleNamespace(training=True)
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    expected = dm.frontend(wave, _pt([2.0] * 4, [1.2] * 4))  # every clip: p = 1, one pitch and one rate
    assert torch.allclose(spec, expected, atol=1e-5) and not torch.allclose(spec, plain, atol=1e-3)
