"""Augmentation you can hear: pitch, tempo, masks, gain and shift do what they say, per clip, training only."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchaudio.functional as AF
import yaml

from audiocls.audio.augment import AugmentConfig, SpecAugment, WaveAugment
from audiocls.audio.frontend import FrontendConfig, build_frontend
from audiocls.audio.stretch import phase_vocoder, pitch_time
from audiocls.errors import ConfigError
from tests.conftest import tiny_datamodule, tiny_frontend_config

SR = 16000
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _tone(freq: float, seconds: float = 1.0, sr: int = SR) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(sr * seconds)) / sr)


def _clicks(period: float = 0.125, seconds: float = 4.0, sr: int = SR) -> torch.Tensor:
    """A click train: 20 ms Hann-windowed 1 kHz blips every ``period`` seconds."""
    x, n = torch.zeros(int(sr * seconds)), int(0.02 * sr)
    blip = torch.sin(2 * math.pi * 1000 * torch.arange(n) / sr) * torch.hann_window(n)
    for t0 in torch.arange(0.0, seconds, period).tolist():
        i = int(t0 * sr)
        x[i : i + n] += blip[: len(x) - i]
    return x


def _onset_spacing(wave: torch.Tensor, seconds: float, sr: int = SR) -> float:
    """Seconds between onsets: the strongest periodicity (2..30 Hz) of the 1 ms energy envelope."""
    env = torch.nn.functional.avg_pool1d((wave[: int(seconds * sr)] ** 2)[None, None], sr // 1000)[0, 0]
    spec = torch.fft.rfft(env - env.mean(), n=1 << 16).abs()
    freqs = torch.fft.rfftfreq(1 << 16, 1e-3)
    band = (freqs > 2) & (freqs < 30)
    return 1 / freqs[band][spec[band].argmax()].item()


def _mel_peak(wave: torch.Tensor) -> int:
    """Mel bin (of 128, 16 kHz, 64 ms windows) where a tone's time-averaged log-mel peaks."""
    fe = build_frontend(FrontendConfig.logmel(window_ms=64, hop_ms=16, n_mels=128, log="ln"), SR)
    return int(fe(wave.reshape(1, -1))[0, 0].mean(-1).argmax())


@pytest.mark.parametrize(("semitones", "target"), [(2.0, 493.88), (-2.0, 392.00)])
def test_pitch_shift_moves_a_440_hz_tone_to_its_interval(semitones, target):
    aug = WaveAugment(AugmentConfig(pitch_shift=(semitones, semitones), pitch_time_mode="vocoder"))
    shifted = aug(_tone(440)[None])[0]
    assert _mel_peak(shifted) == pytest.approx(_mel_peak(_tone(target)), abs=1)
    assert abs(_mel_peak(_tone(440)) - _mel_peak(_tone(target))) >= 2  # the check can tell them apart
    assert shifted.shape == (SR,)


@pytest.mark.parametrize("rate", [1.2, 0.9])
def test_time_stretch_changes_click_spacing_and_keeps_pitch(rate):
    aug = WaveAugment(AugmentConfig(time_stretch=(rate, rate), stretch_n_fft=512, pitch_time_mode="vocoder"))
    clicks = _clicks()
    out = aug(clicks[None])[0]
    assert out.shape == clicks.shape
    assert _onset_spacing(clicks, 4.0) == pytest.approx(0.125, rel=0.02)
    assert _onset_spacing(out, min(4.0, 4.0 / rate)) == pytest.approx(0.125 / rate, rel=0.02)
    if rate > 1:  # shorter content, zero-padded back to the clip length
        assert out[int(4.0 / rate * SR) + 1 :].abs().max() == 0
    assert _mel_peak(pitch_time(_tone(440)[None], torch.tensor([rate]), torch.zeros(1))) == _mel_peak(_tone(440))


def test_batched_phase_vocoder_equals_torchaudio_per_rate():
    x = torch.randn(3, 8000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    window = torch.hann_window(256, dtype=torch.float64)
    spec = torch.stft(x, 256, 64, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * 64, 129, dtype=torch.float64)[:, None]
    rates = torch.tensor([0.75, 1.0, 1.25])  # exact in binary, so both step through the same frames
    ours = phase_vocoder(spec, rates, 64)
    for i, rate in enumerate(rates.tolist()):
        ref = AF.phase_vocoder(spec[i : i + 1], rate, advance)[0]
        assert torch.allclose(ours[i, :, : ref.shape[-1]], ref, atol=1e-9 * ref.abs().max())
        assert ours[i, :, ref.shape[-1] :].abs().sum() == 0  # frames past the clip's own end are empty


def test_pitch_time_batched_equals_per_item():
    gen = torch.Generator().manual_seed(1)
    wave = torch.randn(4, SR, generator=gen) * 0.1 + _tone(300)
    rates, semis = torch.tensor([1.0, 1.2, 0.9, 1.05]), torch.tensor([0.0, 2.0, -1.0, 2.0])
    batched = pitch_time(wave, rates, semis)
    per_item = torch.cat([pitch_time(wave[i : i + 1], rates[i : i + 1], semis[i : i + 1]) for i in range(4)])
    assert batched.shape == wave.shape
    assert torch.allclose(batched, per_item, atol=1e-5)
    assert torch.allclose(batched[0], wave[0], atol=1e-4)  # rate 1, 0 semitones: the clip itself


def test_pitch_time_p_changes_about_that_share_of_clips():
    torch.manual_seed(0)
    cfg = AugmentConfig(pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2), pitch_time_p=0.5, pitch_time_mode="vocoder")
    wave = _tone(500, 0.25)[None].repeat(64, 1)
    out = WaveAugment(cfg)(wave)
    changed = (out - wave).abs().amax(1) > 1e-3
    assert 16 <= int(changed.sum()) <= 48  # about half, not none and not all
    untouched = WaveAugment(AugmentConfig(pitch_shift=(-2.0, 2.0), pitch_time_p=0.0, pitch_time_mode="vocoder"))(wave)
    assert torch.equal(untouched, wave)


def test_pitch_draws_lie_on_the_configured_grid_and_stretches_in_the_range(monkeypatch):
    """Every drawn semitone value is exactly ``low + k * pitch_step`` within [low, high], every grid point is drawn,
    rates lie in the stretch range, and exactly the chosen clips are changed."""
    torch.manual_seed(0)
    cfg = AugmentConfig(pitch_shift=(-1.5, 2.0), pitch_step=0.5, time_stretch=(0.9, 1.2), pitch_time_p=0.5)
    aug = WaveAugment(cfg)
    chosen, rates, semis = aug.draw(4000, torch.device("cpu"))
    assert semis.dtype == torch.float64
    k = (semis + 1.5) / 0.5
    assert torch.equal(k, k.round())  # on the grid exactly
    assert set(semis.tolist()) == {-1.5 + 0.5 * i for i in range(8)}  # -1.5 .. 2.0, both ends drawn
    assert rates.min() >= 0.9 and rates.max() < 1.2 and len(set(rates.tolist())) == len(rates)  # continuous
    assert abs(len(chosen) / 4000 - 0.5) < 0.04  # p = 0.5: 6 standard deviations
    # the vocoder changes exactly the clips drawn, as draw() reports them
    seen = {}
    real = WaveAugment.draw

    def record(self, batch, device):
        seen["draws"] = real(self, batch, device)
        return seen["draws"]

    monkeypatch.setattr(WaveAugment, "draw", record)
    wave = _tone(500, 0.25)[None].repeat(32, 1)
    vocoder = WaveAugment(AugmentConfig(pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2), pitch_time_p=0.5,
                                        pitch_time_mode="vocoder"))  # fmt: skip
    out = vocoder(wave)
    picked, _, semis = seen["draws"]
    assert torch.equal(semis, semis.round())  # pitch_step 1: whole semitones
    changed = torch.nonzero((out - wave).abs().amax(1) > 1e-3).squeeze(1)
    assert torch.equal(changed, picked.sort().values)


def test_masks_cover_the_configured_widths_and_all_channels():
    torch.manual_seed(0)
    cfg = AugmentConfig(freq_masks=1, freq_mask_width=10, time_masks=1, time_mask_width=20)
    spec = torch.randn(300, 3, 64, 100, dtype=torch.float64)  # no cell equals the fill value by chance
    out = SpecAugment(cfg)(spec)
    masked = out != spec  # (B, C, F, T)
    assert torch.equal(masked[:, 0], masked[:, 1]) and torch.equal(masked[:, 0], masked[:, 2])
    rows = masked[:, 0].all(dim=2)  # (B, F): rows masked over the whole time axis
    cols = masked[:, 0].all(dim=1)  # (B, T)
    for band, width in ((rows, 10), (cols, 20)):
        widths = band.sum(1)
        assert widths.max() == width and widths.min() == 0  # widths 0..max are all drawn
        for b in torch.nonzero(widths).squeeze(1).tolist():  # each mask is one contiguous band
            idx = torch.nonzero(band[b]).squeeze(1)
            assert idx[-1] - idx[0] + 1 == len(idx)
    # masked cells hold the clip's own mean: no value out of the clip's range, no other clip's values
    fill = spec.mean(dim=(1, 2, 3))
    for b in range(5):
        assert torch.allclose(out[b][masked[b]], fill[b].expand(int(masked[b].sum())))


def test_gain_and_shift_are_per_clip_and_within_bounds():
    torch.manual_seed(0)
    wave = torch.randn(32, 1000)
    gained = WaveAugment(AugmentConfig(gain_db=6.0))(wave)
    ratio_db = 20 * torch.log10(gained.norm(dim=1) / wave.norm(dim=1))
    assert ratio_db.abs().max() <= 6.0 + 1e-4 and ratio_db.std() > 1.0
    shifted = WaveAugment(AugmentConfig(shift=0.1))(wave)
    shifts = []
    for b in range(32):
        match = [k for k in range(-100, 101) if torch.equal(torch.roll(wave[b], k), shifted[b])]
        assert match, "each clip is a circular shift of itself by at most 10 %"
        shifts.append(match[0])
    assert min(shifts) < 0 < max(shifts)


def test_nothing_is_augmented_in_eval():
    cfg = AugmentConfig(
        gain_db=6, shift=0.5, freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_width=8,
        pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2),
    )  # fmt: skip
    wave, spec = torch.randn(4, SR), torch.randn(4, 3, 32, 40)
    assert torch.equal(WaveAugment(cfg).eval()(wave), wave)
    assert torch.equal(SpecAugment(cfg).eval()(spec), spec)


def test_datamodule_augments_in_training_only(tiny_root):

    aug = AugmentConfig(gain_db=6, pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2), freq_masks=1, freq_mask_width=4)
    dm = tiny_datamodule(tiny_root, aug)
    frontend = tiny_frontend_config()
    wave, y = torch.randn(4, 8000) * 0.1, torch.arange(4)
    plain = build_frontend(frontend, 8000)(wave)
    for trainer in (None, SimpleNamespace(training=False)):
        dm.trainer = trainer
        spec, labels = dm.on_after_batch_transfer((wave, y), 0)
        assert torch.equal(spec, plain) and torch.equal(labels, y)
    dm.trainer = SimpleNamespace(training=True)
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape == plain.shape and not torch.allclose(spec, plain, atol=1e-3)


def test_the_paper_recipe_enables_the_papers_augmentation():
    block = yaml.safe_load((CONFIGS / "recipes" / "paper.yaml").read_text())["data"]["init_args"]["augment"]
    cfg = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in block.items()})
    assert cfg.pitch_shift == (-2.0, 2.0) and cfg.pitch_step == 1.0 and cfg.time_stretch == (0.9, 1.2)
    assert cfg.pitch_time_p == 0.5
    assert cfg.pitch_time_mode == "vocoder" != AugmentConfig().pitch_time_mode  # the paper's, not the fast default
    WaveAugment(cfg), SpecAugment(cfg)


@pytest.mark.parametrize("name", ["esc50.yaml", "esc10.yaml", "urbansound8k.yaml", "gtzan.yaml", "fsdd.yaml"])
def test_dataset_configs_leave_augmentation_to_the_recipe(name):
    """A dataset config's augment block would merge with the recipe's (the paper's pitch/time under the CPU recipe)."""
    init = yaml.safe_load((CONFIGS / name).read_text())["data"]["init_args"]
    assert "augment" not in init and "normalize" not in init and "precompute_frontend" not in init


@pytest.mark.parametrize(("width", "size", "cells"), [(0.125, 128, 16), (0.125, 64, 8), (0.1, 250, 25), (0.1, 96, 10)])
def test_mask_width_as_a_share_of_the_axis(width, size, cells):
    """The CPU recipe's shares give the widths the recorded ESC-10 (16, 25) and FSDD (8, 10) runs typed."""
    from audiocls.audio.augment import mask_width

    assert mask_width(width, size) == cells
    assert mask_width(16, 128) == 16 and mask_width(300, 250) == 250


def test_mask_shares_cover_that_many_cells():
    torch.manual_seed(0)
    cfg = AugmentConfig(freq_masks=1, freq_mask_width=0.25, time_masks=0)
    spec = torch.arange(200 * 64 * 10, dtype=torch.float).reshape(200, 1, 64, 10)  # no cell equals a clip's mean
    out = SpecAugment(cfg).train()(spec.repeat(1, 3, 1, 1))
    masked_bins = (out[:, 0] != spec[:, 0]).any(dim=2).sum(dim=1)  # (B,) bins changed per clip
    assert int(masked_bins.max()) == 16  # widths drawn in 0..round(0.25 * 64); 200 draws reach the top


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pitch_shift": (2.0, -2.0)}, "low <= high"),
        ({"time_stretch": (0.0, 1.2)}, r"time_stretch=\[0.0, 1.2\]"),
        ({"pitch_time_p": 1.5}, "probability"),
        ({"pitch_step": 0.0}, "pitch_step=0.0"),
        ({"shift": 2.0}, "fraction of the clip"),
        ({"gain_db": -1.0}, "gain_db=-1.0"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WaveAugment(AugmentConfig(**kwargs))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_pitch_time_agree():
    wave = torch.randn(4, 2 * 44100, generator=torch.Generator().manual_seed(0)) * 0.1
    rates, semis = torch.tensor([1.0, 1.2, 0.9, 1.1]), torch.tensor([0.0, 2.0, -2.0, 1.0])
    cpu = pitch_time(wave, rates, semis)
    cuda = pitch_time(wave.cuda(), rates.cuda(), semis.cuda()).cpu()
    assert (cpu - cuda).abs().max() < 1e-3 * wave.abs().max()


def test_every_augment_setting_says_what_it_acts_on_and_precompute_refuses_each_wave_step():
    from dataclasses import fields

    from audiocls.audio.augment import WAVE_STEPS
    from audiocls.data.precompute import check_speed_settings

    assert {f.name: f.metadata.get("acts_on") for f in fields(AugmentConfig)} == {
        **dict.fromkeys(("gain_db", "shift", "pitch_shift", "time_stretch"), "wave"),
        **dict.fromkeys(("freq_masks", "time_masks", "time_roll"), "spec"),
        **dict.fromkeys(
            ("freq_mask_width", "time_mask_width", "pitch_step", "pitch_time_p", "stretch_n_fft", "pitch_time_mode"),
            "option",
        ),
    }
    on = {"gain_db": 3.0, "shift": 0.1, "pitch_shift": (-1.0, 1.0), "time_stretch": (0.9, 1.1)}
    assert set(WAVE_STEPS) == set(on)
    for name in WAVE_STEPS:
        with pytest.raises(ConfigError, match=f"augment.{name}="):
            check_speed_settings(FrontendConfig(), AugmentConfig(**{name: on[name]}), None, True)
    check_speed_settings(FrontendConfig(), AugmentConfig(time_roll=1.0, freq_masks=2, time_masks=2), None, True)
