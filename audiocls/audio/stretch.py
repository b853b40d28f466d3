"""Pitch shift and time stretch of a batch, per clip: a phase vocoder and overlap-add on tensors.

Everything runs in the waveform's float dtype, frames-major: an STFT is (B, frames, n_fft // 2 + 1), so a
frame is one contiguous row, the vocoder's frame lookup is a row gather and the overlap-add is four shifted
additions (hop = n_fft / 4). On a CPU the clips go through in small groups, so each group's spectra stay in
cache instead of a few hundred megabytes of fresh memory per step; other devices take the batch whole.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

log = logging.getLogger(__name__)

__all__ = ["phase_vocoder", "overlap_add", "pitch_time", "CENT"]

#: pitch accuracy of the resampling ratio, in semitones; a finer ratio has a larger denominator, and
#: ``torchaudio.functional.resample`` costs about that many multiply-adds per output sample
CENT = 0.01

#: STFT frames per group of clips on a CPU (a speed setting; the output does not depend on it)
CHUNK_FRAMES = 512


def _steps(n: int, rates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-frame positions (B, K) float64 of K output frames, and which exist (B, K) bool: position < n."""
    steps = torch.arange(k, device=rates.device, dtype=torch.float64)[None] * rates.double()[:, None]
    return steps, steps < n


def _vocode(spec: torch.Tensor, rates: torch.Tensor, k: int) -> torch.Tensor:
    """Phase vocoder on frames-major spectra: complex (B, N, F) -> complex (B, K, F), one rate per clip.

    Output frame ``j`` of clip ``b`` sits at input position ``s = j * rates[b]``: its magnitude interpolates
    frames ``floor(s)`` and ``floor(s) + 1``, its phase is the first frame's phase plus the phase increments
    ``angle(X[i + 1]) - angle(X[i])`` at the frames passed so far (torchaudio's and librosa's vocoder: their
    expected phase advance is subtracted and added back, which changes nothing modulo 2 pi). A phase is only
    ever used through its phasor, so the sum of increments is a product of unit phasors ``u = X / |X|``
    (``u = 1`` where ``X = 0``, as ``angle(0) = 0``): the output phasor of frame ``j`` is
    ``u[0] * prod_{i < j} u[idx_i + 1] * conj(u[idx_i])``, complex multiplies and one ``cumprod`` instead of
    ``atan2`` and ``cos``/``sin`` (and no float32 rounding of a phase that grows to hundreds of radians).
    """
    b, n, f = spec.shape
    steps, valid = _steps(n, rates, k)  # (B, K)
    steps = steps.clamp(max=n)
    idx = steps.floor().long()
    alpha = (steps - idx).to(spec.real.dtype)[..., None]  # (B, K, 1)
    # two zero frames after the clip, as torchaudio and librosa do, and one before it, whose phasor is 1: the
    # "increment" into frame 0 is then frame 0's own phasor, the first factor of every product
    padded = F.pad(spec, (0, 0, 1, 2))  # (B, N + 3, F): row r is frame r - 1
    mag = padded.abs()
    unit = torch.where(mag > 0, torch.sgn(padded), torch.ones((), dtype=padded.dtype, device=padded.device))
    inc = (unit[:, 1:] * unit[:, :-1].conj()).flatten(0, 1)  # (B (N + 2), F): row r, frame r - 1 to r
    mag = mag.flatten(0, 1)  # (B (N + 3), F)
    rows = torch.arange(b, device=spec.device)[:, None]
    at = (idx + 1 + rows * (n + 3)).flatten()  # row of frame idx in the flattened (B (N + 3), F)
    m0, m1 = mag.index_select(0, at), mag.index_select(0, at + 1)
    first = torch.cat([idx.new_zeros(b, 1), idx[:, :-1] + 1], dim=1)  # increment rows: into frame 0, then idx + 1
    phasor = inc.index_select(0, (first + rows * (n + 2)).flatten()).view(b, k, f).cumprod_(dim=1)  # (B, K, F)
    m = torch.lerp(m0.view(b, k, f), m1.view(b, k, f), alpha).mul_(valid[..., None])
    parts = torch.view_as_real(phasor)
    parts[..., 0].mul_(m)  # phasor * m without a complex copy of m
    parts[..., 1].mul_(m)
    return phasor


def phase_vocoder(spec: torch.Tensor, rates: torch.Tensor, hop: int, frames: int | None = None) -> torch.Tensor:
    """Time-stretch complex STFTs, each clip by its own rate (torchaudio's phase vocoder, batched over rates).

    Args:
        spec: complex STFT (B, F, N) of one-sided spectra (F = n_fft // 2 + 1), as ``torch.stft`` returns it.
        rates: (B,) speed-up per clip; above 1 is shorter. Clip ``b`` gets ``ceil(N / rates[b])`` frames, the
            rest of the common output is zero.
        hop: the STFT hop in samples (the vocoder's result does not depend on it).
        frames: compute only this many output frames (``None``: all, ``ceil(N / min(rates))``).

    Returns:
        complex (B, F, K) with K = ceil(N / min(rates)), or ``frames`` when given.
    """
    n = spec.shape[-1]
    k = math.ceil(n / float(rates.min())) if frames is None else frames
    return _vocode(spec.transpose(1, 2), rates.to(spec.device), k).transpose(1, 2)


def overlap_add(spec: torch.Tensor, valid: torch.Tensor, window: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse STFT (centred frames, hop = n_fft / 4) that normalises each clip by its own frames' window sum.

    ``torch.istft`` divides by the window envelope of all K frames; with clips of different frame counts in
    one batch, the missing frames of a shorter clip would then dim its last half-window. Here the envelope
    of clip ``b`` counts its ``valid`` frames only, so the result equals the clip's own inverse STFT.

    Args:
        spec: complex (B, K, F) frames-major one-sided spectra, F = n_fft // 2 + 1.
        valid: (B, K) bool, the frames that exist.
        window: (n_fft,) synthesis window (the analysis window); n_fft divisible by 4.
        length: output samples.

    Returns:
        (B, length) waveforms.
    """
    n_fft = window.shape[0]
    hop = n_fft // 4
    b, k, _ = spec.shape
    frames = (torch.fft.irfft(spec, n=n_fft, dim=-1) * window).view(b, k, 4, hop)
    quarters = (window * window).view(4, hop)
    ola = spec.real.new_zeros(b, k + 3, hop)
    env = spec.real.new_zeros(b, k + 3, hop)
    weight = valid.to(window.dtype)[..., None]  # (B, K, 1)
    for q in range(4):  # quarter q of frame j lands on hop-block j + q
        ola[:, q : q + k] += frames[:, :, q]
        env[:, q : q + k] += weight * quarters[q]
    ola, env = ola.view(b, -1), env.view(b, -1)
    y = torch.where(env > 1e-11, ola / env.clamp_min(1e-11), torch.zeros_like(ola))
    y = y[:, n_fft // 2 : n_fft // 2 + length]
    return F.pad(y, (0, length - y.shape[1])) if y.shape[1] < length else y


def _ratio(semitones: float) -> Fraction:
    """2**(-semitones/12) as the fraction new/orig with the smallest denominator that is within 1 cent."""
    target = 2.0 ** (-semitones / 12)
    for limit in (8, 16, 32, 64, 128, 256, 512):
        ratio = Fraction(target).limit_denominator(limit)
        if abs(12 * math.log2(ratio) + semitones) <= CENT:
            return ratio
    return ratio


def _stretch(wave: torch.Tensor, pv_rates: torch.Tensor, n_fft: int, frames: int, length: int) -> torch.Tensor:
    """STFT (centred, zero-padded, Hann), phase vocoder by ``pv_rates``, overlap-add: (B, T) -> (B, length)."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=wave.device, dtype=wave.dtype)
    framed = F.pad(wave, (n_fft // 2, n_fft // 2)).unfold(-1, n_fft, hop)  # (B, 1 + T // hop, n_fft)
    spec = torch.fft.rfft(framed * window)  # (B, N, F)
    stretched = _vocode(spec, pv_rates, frames)
    return overlap_add(stretched, _steps(spec.shape[1], pv_rates, frames)[1], window, length)


def pitch_time(wave: torch.Tensor, rates: torch.Tensor, semitones: torch.Tensor, n_fft: int = 2048) -> torch.Tensor:
    """Pitch-shift and time-stretch every clip by its own amounts: ``wave (B, T) -> wave (B, T)``.

    Equivalent to librosa's ``time_stretch(pitch_shift(wave, n_steps=semitones), rate=rates)`` per clip,
    cropped or zero-padded back to T (pitch within 1 cent). Clip ``b`` of the output depends on clip ``b`` of
    the input only.

    Args:
        wave: (B, T) float waveforms.
        rates: (B,) tempo rates (1 = unchanged, 1.2 = 20 % faster).
        semitones: (B,) pitch shifts; clips with equal values are resampled together.
        n_fft: phase-vocoder FFT size (hop n_fft / 4, Hann window; a multiple of 4).
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
    needed = int(torch.minimum(lengths, torch.ceil(t / ratios).long() + n_fft).max())
    frames = needed // hop + 2
    group = max(1, CHUNK_FRAMES // (1 + t // hop)) if dev.type == "cpu" else b
    y = torch.cat(
        [_stretch(wave[i : i + group], pv_rates[i : i + group], n_fft, frames, needed) for i in range(0, b, group)]
    )
    y = y * (torch.arange(needed, device=dev)[None] < lengths[:, None])
    out = torch.zeros(b, t, device=dev)
    for s in sorted(set(semis)):
        sel = torch.tensor([i for i, v in enumerate(semis) if v == s], device=dev)
        part, ratio = y[sel], fractions[semis.index(s)]
        if ratio != 1:
            part = AF.resample(part, orig_freq=ratio.denominator, new_freq=ratio.numerator)
        out[sel] = part[:, :t] if part.shape[1] >= t else F.pad(part, (0, t - part.shape[1]))
    final = torch.round(t / rates.to(dev, torch.float64)).long()  # (B,) samples of content after the stretch
    return (out * (torch.arange(t, device=dev)[None] < final[:, None])).to(dtype)
