"""Pitch shift and time stretch of a batch, per clip: a phase vocoder and overlap-add on tensors."""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import torch
import torchaudio.functional as AF

log = logging.getLogger(__name__)

__all__ = ["phase_vocoder", "overlap_add", "pitch_time", "CENT"]

#: pitch accuracy of the resampling ratio, in semitones; a finer ratio has a larger denominator, and
#: ``torchaudio.functional.resample`` costs about that many multiply-adds per output sample
CENT = 0.01


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
