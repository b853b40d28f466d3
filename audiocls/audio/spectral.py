"""Pitch shift and time stretch on the spectrogram side (``augment.pitch_time_mode: spectral``).

The phase vocoder (:mod:`audiocls.audio.stretch`) changes the waveform; this module changes what the frontend
computes from the unchanged waveform, at almost no cost:

- **pitch shift** by ``s`` semitones scales the frequency axis of each frame's power spectrum by
  ``a = 2 ** (s / 12)``: the shifted power at bin ``k`` is the power at bin ``k / a``, linearly interpolated
  (:func:`shift_power`, zero where ``k / a`` lies above the Nyquist bin), so a tone at bin ``k0`` moves to
  ``a * k0`` with its power kept. The mel projection of the shifted power is the projection of the unshifted
  power by a warped filterbank ``W^T fb`` (:func:`warp_filterbank`, ``W`` the interpolation weights), so the
  shift costs one other matrix per pitch value, built once, with the same banded matmuls;
- **time stretch** by ``rate`` (above 1 is faster) maps the frames of the stretched clip, cropped or padded
  with silence to the clip's length (as the vocoder path does), onto the source frames ``x = y * rate``. The
  frontend's final resize to ``frames_out`` (bilinear, antialiased as PIL and ``F.interpolate(antialias=True)``)
  and the stretch are one resampling of the frame axis (:func:`stretch_frames`): a few weighted gathers per
  output frame instead of the resize.

Differences from the vocoder path: no phase (the spectral content of each frame is kept exactly, so there
are no vocoder artefacts; a stretch interpolates whole log-mel frames, so transients are smeared the way
the resize smears them), and in :class:`~audiocls.audio.augment.WaveAugment` the waveform's gain and
circular shift come first, the pitch/time change after them, in the frontend.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["PitchTime", "shift_power", "warp_filterbank", "warp_bands", "stretch_frames", "resize_taps"]


class PitchTime(NamedTuple):
    """Per-clip pitch shift (semitones) and tempo rate (above 1 is faster), both (B,); 0 and 1 leave a clip be."""

    semitones: torch.Tensor
    rates: torch.Tensor


def _lerp_source(n_freq: int, semitones: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each output bin k: source bins j0, j1 = j0 + 1 (clamped), weights 1 - w and w, float64, and which
    bins have a source (``k / a`` at most the top bin)."""
    ratio = 2.0 ** (semitones / 12.0)
    src = torch.arange(n_freq, device=device, dtype=torch.float64) / ratio
    valid = src <= n_freq - 1
    j0 = src.floor().clamp(max=n_freq - 1).long()
    w = src - j0
    return j0, (j0 + 1).clamp(max=n_freq - 1), 1 - w, w, valid


def shift_power(power: torch.Tensor, semitones: float) -> torch.Tensor:
    """power (..., n_freq) -> the power spectrum shifted by ``semitones``: bin k takes the power at ``k / a``
    (linear interpolation; 0 above the top bin). The explicit form of what :func:`warp_filterbank` folds in."""
    j0, j1, w0, w1, valid = _lerp_source(power.shape[-1], semitones, power.device)
    dt = power.dtype
    out = power[..., j0] * w0.to(dt) + power[..., j1] * w1.to(dt)
    return out * valid.to(dt)


def warp_filterbank(fb: torch.Tensor, semitones: float) -> torch.Tensor:
    """fb (n_freq, n_mels) -> ``W^T fb``, so that ``power @ warp_filterbank(fb, s) == shift_power(power, s) @ fb``.

    Built in float64 and returned in ``fb``'s dtype; 0 semitones gives ``fb`` itself (the weights are exactly 1).
    """
    j0, j1, w0, w1, valid = _lerp_source(fb.shape[0], semitones, fb.device)
    rows = fb.double() * valid[:, None]
    out = torch.zeros_like(rows)
    out.index_add_(0, j0, rows * w0[:, None])
    out.index_add_(0, j1, rows * w1[:, None])
    return out.to(fb.dtype)


def warp_bands(warped: torch.Tensor, bands: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The banded projection's groups of filters (m0:m1 of ``bands``) with their bins lo:hi re-measured on a
    warped filterbank; a group without any non-zero weight gets an empty band (its outputs are 0)."""
    out = []
    for _, _, m0, m1 in bands:
        rows = torch.nonzero(warped[:, m0:m1].ne(0).any(1)).flatten().tolist()
        out.append((rows[0], rows[-1] + 1, m0, m1) if rows else (0, 0, m0, m1))
    return out


def resize_taps(
    frames_in: int, frames_out: int, rates: torch.Tensor, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather indices and weights, (B, frames_out, K) each, of the stretch + crop/pad + resize of each clip.

    Output frame ``u`` is centred at source position ``(u + 0.5) * scale`` with ``scale = rate * frames_in /
    frames_out``, with the triangle filter of ``F.interpolate(mode="bilinear", antialias=True)`` (support and
    width ``scale`` when it is at least 1, else 1; taps normalised to sum 1), over the stretched clip's
    ``round(frames_in * rate)`` source frames: an index ``frames_in`` stands for silence past the clip's end
    (rate above 1). At rate 1 these are the weights of ``F.interpolate`` itself: positions and weights are
    computed in ``dtype`` as ATen does for that dtype (float32 rounding of the centre grows with ``u``, and
    float64 weights would differ from the resize by ~2e-5 of the values at the last frames).
    """
    rates = rates.double()
    scale = (rates * frames_in / frames_out).to(dtype)  # (B,)
    support = scale.clamp(min=1.0)
    invscale = torch.where(scale >= 1, 1 / scale, torch.ones_like(scale))
    length = torch.round(rates * frames_in).to(dtype)  # source frames covered by the cropped/padded stretched clip
    k = int(math.ceil(2 * float(support.max()))) + 2
    center = scale[:, None] * (torch.arange(frames_out, device=rates.device, dtype=dtype) + 0.5)  # (B, W)
    xmin = (center - support[:, None] + 0.5).trunc().clamp(min=0)  # as ATen: truncation, then max(., 0)
    xmax = torch.minimum((center + support[:, None] + 0.5).trunc(), length[:, None])
    taps = xmin[..., None] + torch.arange(k, device=rates.device, dtype=dtype)  # (B, W, K)
    weight = (1 - ((taps - center[..., None] + 0.5) * invscale[:, None, None]).abs()).clamp(min=0)
    weight = weight * (taps < xmax[..., None])
    weight = weight / weight.sum(-1, keepdim=True).clamp(min=1e-12)
    return taps.clamp(max=frames_in).long(), weight


def stretch_frames(spec: torch.Tensor, rates: torch.Tensor, frames_out: int, fill: float) -> torch.Tensor:
    """spec (B, F, N) -> (B, F, frames_out): each clip time-stretched by its rate (above 1 is faster), cropped or
    padded with ``fill`` (the value of silence, e.g. ``ln(eps)``) to its length, and resized to ``frames_out``
    frames in one resampling (:func:`resize_taps`). Pure tensor ops on ``spec``'s device, no per-clip loop."""
    b, f, n = spec.shape
    idx, weight = resize_taps(n, frames_out, rates.to(spec.device), spec.dtype)
    src = torch.cat([spec, spec.new_full((b, f, 1), fill)], dim=-1)  # index n: silence
    weight = weight.to(spec.dtype)
    out = None
    for j in range(idx.shape[-1]):
        tap = torch.gather(src, 2, idx[:, None, :, j].expand(b, f, frames_out)) * weight[:, None, :, j]
        out = tap if out is None else out.add_(tap)
    return out
