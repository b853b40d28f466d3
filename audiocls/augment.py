"""Batch augmentations on the device, training only, with per-clip random parameters.

Waveform side (before the frontend), in this order: the paper's pitch shift and time stretch, random gain,
circular time shift. Spectrogram side (after the frontend): SpecAugment-style frequency and time masks.
Mixup needs the labels and lives in the model's loss. Everything is off by default; :class:`AugmentConfig`
switches each on from YAML, and a module in ``eval()`` mode returns its input unchanged.

Pitch shift and time stretch follow librosa (``effects.pitch_shift`` then ``effects.time_stretch``, as the
paper's code): a phase vocoder stretches by ``rate * 2**(-semitones / 12)`` and a band-limited resampling
by ``2**(-semitones / 12)`` restores the duration, so the pitch moves and the tempo changes by ``rate``. Both
run batched: the phase vocoder takes one rate per clip exactly (a gather over STFT frames, no grouping), and
the resampling runs once per distinct pitch value of the batch (``torchaudio.functional.resample`` with the
ratio as a small fraction), which is why semitones are drawn on a grid (``pitch_step``). The result is cropped
or zero-padded back to the input length, so a rate above 1 leaves silence at the end and a rate below 1 drops
the end of the clip; the paper's code instead kept the new length and resized the spectrogram to 250 frames,
which undoes most of the tempo change in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torchaudio.functional as AF
from torch import nn

from audiocls.errors import ConfigError

__all__ = ["AugmentConfig", "WaveAugment", "SpecAugment", "check_augment", "overlap_add", "phase_vocoder", "pitch_time"]

#: pitch accuracy of the resampling ratio, in semitones; a finer ratio has a larger denominator, and
#: ``torchaudio.functional.resample`` costs about that many multiply-adds per output sample
CENT = 0.01


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation settings (0 or ``None`` disables a step).

    Args:
        gain_db: random gain drawn uniformly in [-gain_db, +gain_db] dB per clip.
        shift: circular time shift by a uniform fraction of the clip in [-shift, +shift], per clip.
        freq_masks: number of frequency masks per clip.
        freq_mask_width: maximum width of each frequency mask, in mel bins (widths drawn in 0..max).
        time_masks: number of time masks per clip.
        time_mask_width: maximum width of each time mask, in frames (widths drawn in 0..max).
        pitch_shift: [low, high] semitones; each clip draws a value of the grid ``low + k * pitch_step``
            uniformly (the paper: [-2, 2], integer steps). ``None`` disables it.
        pitch_step: grid of the pitch draws, in semitones (1.0 is the paper's integers; 0.1 is near-continuous).
        time_stretch: [low, high] tempo rate drawn uniformly per clip; above 1 is faster (the paper: [0.9, 1.2]).
            ``None`` disables it.
        pitch_time_p: probability that a clip gets pitch shift and time stretch. The paper trained on the
            original set plus one augmented copy, i.e. half of what a model sees is augmented: 0.5.
        stretch_n_fft: FFT size of the phase vocoder in samples (librosa's default 2048; hop n_fft / 4).
    """

    gain_db: float = 0.0
    shift: float = 0.0
    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0
    pitch_shift: tuple[float, float] | None = None
    pitch_step: float = 1.0
    time_stretch: tuple[float, float] | None = None
    pitch_time_p: float = 1.0
    stretch_n_fft: int = 2048


def check_augment(config: AugmentConfig) -> None:
    """Raise :class:`ConfigError` naming the value when a setting cannot work."""
    bad = []
    for name in ("gain_db", "shift", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
        if getattr(config, name) < 0:
            bad.append(f"augment.{name}={getattr(config, name)} must be >= 0 (0 disables it)")
    if config.shift > 1:
        bad.append(f"augment.shift={config.shift} is a fraction of the clip: choose a value in [0, 1]")
    for name, lowest in (("pitch_shift", -12.0), ("time_stretch", 0.25)):
        value = getattr(config, name)
        if value is None:
            continue
        if len(value) != 2 or value[0] > value[1]:
            bad.append(f"augment.{name}={list(value)} must be [low, high] with low <= high")
        elif name == "pitch_shift" and (value[0] < lowest or value[1] > -lowest):
            bad.append(f"augment.pitch_shift={list(value)} must stay within [-12, 12] semitones")
        elif name == "time_stretch" and (value[0] < lowest or value[1] > 4):
            bad.append(f"augment.time_stretch={list(value)} must stay within [0.25, 4] (the paper: [0.9, 1.2])")
    if config.pitch_step <= 0:
        bad.append(f"augment.pitch_step={config.pitch_step} must be > 0 semitones (1.0 = the paper's integers)")
    if not 0 <= config.pitch_time_p <= 1:
        bad.append(f"augment.pitch_time_p={config.pitch_time_p} is a probability: choose a value in [0, 1]")
    if config.stretch_n_fft < 16:
        bad.append(f"augment.stretch_n_fft={config.stretch_n_fft} is too small: use e.g. 2048 (librosa's default)")
    if bad:
        raise ConfigError("; ".join(bad))


def _steps(n: int, rates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-frame positions (B, K) float64 of K output frames, and which exist (B, K) bool: position < n."""
    steps = torch.arange(k, device=rates.device, dtype=torch.float64)[None] * rates.double()[:, None]
    return steps, steps < n


def phase_vocoder(spec: torch.Tensor, rates: torch.Tensor, hop: int, frames: int | None = None) -> torch.Tensor:
    """Time-stretch complex STFTs, each clip by its own rate (torchaudio's phase vocoder, batched over rates).

    Magnitudes and phase increments are computed once on the input frames and gathered at the output
    frames, so the per-clip rates cost one batched gather. The expected phase advance is taken modulo 2 pi
    (whole turns change nothing), which keeps the accumulated phase small and exact in float32.

    Args:
        spec: complex STFT (B, F, N) of one-sided spectra (F = n_fft // 2 + 1).
        rates: (B,) speed-up per clip; above 1 is shorter. Clip ``b`` gets ``ceil(N / rates[b])`` frames, the
            rest of the common output is zero.
        hop: the STFT hop in samples.
        frames: compute only this many output frames (``None``: all, ``ceil(N / min(rates))``).

    Returns:
        complex (B, F, K) with K = ceil(N / min(rates)), or ``frames`` when given.
    """
    b, f, n = spec.shape
    real = spec.real.dtype
    k = math.ceil(n / float(rates.min())) if frames is None else frames
    steps, valid = _steps(n, rates.to(spec.device), k)  # (B, K)
    steps = steps.clamp(max=n)
    idx = steps.floor().long()
    alpha = (steps - idx).to(real)[:, None, :]  # (B, 1, K)
    padded = torch.nn.functional.pad(spec, (0, 2))  # two zero frames, as torchaudio and librosa do
    mag, phase = padded.abs(), padded.angle()  # (B, F, N + 2)
    advance = torch.linspace(0, math.pi * hop, f, device=spec.device, dtype=real)
    advance = torch.remainder(advance, 2 * math.pi)[None, :, None]
    dphi = phase[..., 1:] - phase[..., :-1] - advance  # (B, F, N + 1): increment from frame j to j + 1
    dphi = dphi - 2 * math.pi * torch.round(dphi / (2 * math.pi)) + advance
    at = idx[:, None, :].expand(b, f, k)
    m0, m1 = torch.gather(mag, 2, at), torch.gather(mag, 2, at + 1)
    inc = torch.gather(dphi, 2, at[..., :-1])
    acc = torch.cumsum(torch.cat([phase[..., :1], inc], dim=-1), dim=-1)
    return torch.polar(torch.lerp(m0, m1, alpha) * valid[:, None, :], acc)


def overlap_add(spec: torch.Tensor, valid: torch.Tensor, window: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """Inverse STFT (centred frames) that normalises each clip by the window sum of its own frames only.

    ``torch.istft`` divides by the window envelope of all K frames; with clips of different frame counts in
    one batch, the missing frames of a shorter clip would then dim its last half-window. Here the envelope
    of clip ``b`` counts its ``valid`` frames only, so the result equals the clip's own inverse STFT.

    Args:
        spec: complex (B, F, K) one-sided spectra, F = n_fft // 2 + 1.
        valid: (B, K) bool, the frames that exist.
        window: (n_fft,) synthesis window (the analysis window).
        hop: hop in samples.
        length: output samples.

    Returns:
        (B, length) waveforms.
    """
    n_fft = window.shape[0]
    b, _, k = spec.shape
    full = (k - 1) * hop + n_fft
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]  # (B, n_fft, K)
    fold = dict(output_size=(1, full), kernel_size=(1, n_fft), stride=(1, hop))
    ola = torch.nn.functional.fold(frames, **fold).view(b, full)
    env = torch.nn.functional.fold((window**2)[None, :, None] * valid[:, None, :].to(window.dtype), **fold)
    env = env.view(b, full)
    y = torch.where(env > 1e-11, ola / env.clamp_min(1e-11), torch.zeros_like(ola))
    y = y[:, n_fft // 2 : n_fft // 2 + length]
    return torch.nn.functional.pad(y, (0, length - y.shape[1])) if y.shape[1] < length else y


def _ratio(semitones: float) -> Fraction:
    """2**(-semitones/12) as the fraction new/orig with the smallest denominator that is within 1 cent."""
    target = 2.0 ** (-semitones / 12)
    for limit in (8, 16, 32, 64, 128, 256, 512):
        ratio = Fraction(target).limit_denominator(limit)
        if abs(12 * math.log2(ratio) + semitones) <= CENT:
            return ratio
    return ratio


def pitch_time(wave: torch.Tensor, rates: torch.Tensor, semitones: torch.Tensor, n_fft: int = 2048) -> torch.Tensor:
    """Pitch-shift and time-stretch every clip by its own amounts: ``wave (B, T) -> wave (B, T)``.

    Equivalent to librosa's ``time_stretch(pitch_shift(wave, n_steps=semitones), rate=rates)`` per clip,
    cropped or zero-padded back to T (pitch within 1 cent). Clip ``b`` of the output depends on clip ``b`` of
    the input only.

    Args:
        wave: (B, T) float waveforms.
        rates: (B,) tempo rates (1 = unchanged, 1.2 = 20 % faster).
        semitones: (B,) pitch shifts; clips with equal values are resampled together.
        n_fft: phase-vocoder FFT size (hop n_fft / 4, Hann window).
    """
    b, t = wave.shape
    dtype, dev = wave.dtype, wave.device
    wave = wave.float()
    hop = n_fft // 4
    semis = semitones.detach().cpu().double().tolist()
    fractions = [_ratio(s) for s in semis]
    ratios = torch.tensor([float(r) for r in fractions], dtype=torch.float64, device=dev)
    pv_rates = rates.to(dev, torch.float64) * ratios  # stretch by rate * ratio, then resample by ratio
    # librosa's length after the stretch, and what the resampler needs of it to fill T output samples
    lengths = torch.round(t / pv_rates).long()
    needed = torch.minimum(lengths, torch.ceil(t / ratios).long() + n_fft)
    window = torch.hann_window(n_fft, device=dev)
    spec = torch.stft(wave, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    frames = int(needed.max()) // hop + 2
    stretched = phase_vocoder(spec, pv_rates, hop, frames=frames)  # (B, F, K)
    y = overlap_add(stretched, _steps(spec.shape[-1], pv_rates, frames)[1], window, hop, int(needed.max()))
    y = y * (torch.arange(y.shape[1], device=dev)[None] < lengths[:, None])
    out = torch.zeros(b, t, device=dev)
    for s in sorted(set(semis)):
        sel = torch.tensor([i for i, v in enumerate(semis) if v == s], device=dev)
        part, ratio = y[sel], fractions[semis.index(s)]
        if ratio != 1:
            part = AF.resample(part, orig_freq=ratio.denominator, new_freq=ratio.numerator)
        out[sel] = part[:, :t] if part.shape[1] >= t else torch.nn.functional.pad(part, (0, t - part.shape[1]))
    final = torch.round(t / rates.to(dev, torch.float64)).long()  # (B,) samples of content after the stretch
    return (out * (torch.arange(t, device=dev)[None] < final[:, None])).to(dtype)


class WaveAugment(nn.Module):
    """``wave (B, T) -> wave (B, T)``: pitch shift + time stretch, random gain, circular shift.

    Each clip draws its own parameters, on the waveform's device. Identity in ``eval()`` mode.

    Args:
        config: the augmentation settings.
    """

    def __init__(self, config: AugmentConfig):
        super().__init__()
        check_augment(config)
        self.config = config

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not self.training:
            return wave
        b, t = wave.shape
        dev = wave.device
        if cfg.pitch_shift is not None or cfg.time_stretch is not None:
            chosen = torch.nonzero(torch.rand(b, device=dev) < cfg.pitch_time_p).squeeze(1)
            n = len(chosen)
            if n:
                rates = torch.ones(n, device=dev, dtype=torch.float64)
                if cfg.time_stretch is not None:
                    lo, hi = cfg.time_stretch
                    rates = lo + torch.rand(n, device=dev, dtype=torch.float64) * (hi - lo)
                semis = torch.zeros(n, device=dev, dtype=torch.float64)
                if cfg.pitch_shift is not None:
                    lo, hi = cfg.pitch_shift
                    steps = math.floor((hi - lo) / cfg.pitch_step + 1e-9)
                    semis = lo + torch.randint(0, steps + 1, (n,), device=dev).double() * cfg.pitch_step
                wave = wave.clone()
                wave[chosen] = pitch_time(wave[chosen], rates, semis, cfg.stretch_n_fft)
        if cfg.gain_db > 0:
            db = (torch.rand(b, 1, device=dev) * 2 - 1) * cfg.gain_db
            wave = wave * torch.pow(10.0, db / 20)
        if cfg.shift > 0:
            shifts = torch.round((torch.rand(b, device=dev) * 2 - 1) * cfg.shift * t).long()
            idx = (torch.arange(t, device=dev).unsqueeze(0) - shifts.unsqueeze(1)) % t
            wave = torch.gather(wave, 1, idx)
        return wave


def _masks(n: int, count: int, width: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, size) bool: True where any of ``count`` random bands of width 0..``width`` covers."""
    pos = torch.arange(size, device=device)
    out = torch.zeros(n, size, dtype=torch.bool, device=device)
    for _ in range(count):
        w = torch.randint(0, width + 1, (n, 1), device=device)
        start = (torch.rand(n, 1, device=device) * (size - w + 1)).long()
        out |= (pos >= start) & (pos < start + w)
    return out


class SpecAugment(nn.Module):
    """``spec (B, C, F, T) -> spec``: frequency and time masks, shared across channels of one clip.

    Masked cells are set to the clip's own mean, so the masks do not introduce an out-of-range value.
    Identity in ``eval()`` mode.

    Args:
        config: the augmentation settings.
    """

    def __init__(self, config: AugmentConfig):
        super().__init__()
        check_augment(config)
        self.config = config

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not self.training:
            return spec
        b, _, f, t = spec.shape
        mask = torch.zeros(b, 1, f, t, dtype=torch.bool, device=spec.device)
        if cfg.freq_masks and cfg.freq_mask_width:
            mask |= _masks(b, cfg.freq_masks, min(cfg.freq_mask_width, f), f, spec.device)[:, None, :, None]
        if cfg.time_masks and cfg.time_mask_width:
            mask |= _masks(b, cfg.time_masks, min(cfg.time_mask_width, t), t, spec.device)[:, None, None, :]
        if not (cfg.freq_masks and cfg.freq_mask_width) and not (cfg.time_masks and cfg.time_mask_width):
            return spec
        fill = spec.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(mask, fill, spec)
