"""Batch augmentations on the device, training only, with per-clip random parameters.

Waveform side (before the frontend): random gain, circular time shift.
Spectrogram side (after the frontend): SpecAugment-style frequency and time masks.
Everything is off by default; :class:`AugmentConfig` switches each on from YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AugmentConfig", "WaveAugment", "SpecAugment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation settings (0 disables a step).

    Args:
        gain_db: random gain drawn uniformly in [-gain_db, +gain_db] dB per clip.
        shift: circular time shift by up to this fraction of the clip, per clip.
        freq_masks: number of frequency masks per clip.
        freq_mask_width: maximum width of each frequency mask, in mel bins.
        time_masks: number of time masks per clip.
        time_mask_width: maximum width of each time mask, in frames.
    """

    gain_db: float = 0.0
    shift: float = 0.0
    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0


class WaveAugment(nn.Module):
    """``wave (B, T) -> wave (B, T)``: random gain and circular shift, each clip its own draw."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, t = wave.shape
        if cfg.gain_db > 0:
            db = (torch.rand(b, 1, device=wave.device) * 2 - 1) * cfg.gain_db
            wave = wave * torch.pow(10.0, db / 20)
        if cfg.shift > 0:
            shifts = (torch.rand(b, device=wave.device) * cfg.shift * t).long()
            idx = (torch.arange(t, device=wave.device).unsqueeze(0) - shifts.unsqueeze(1)) % t
            wave = torch.gather(wave, 1, idx)
        return wave


def _masks(n: int, count: int, width: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, size) bool: True where any of ``count`` random bands of width < ``width`` covers."""
    pos = torch.arange(size, device=device)
    out = torch.zeros(n, size, dtype=torch.bool, device=device)
    for _ in range(count):
        w = torch.randint(0, width + 1, (n, 1), device=device)
        start = (torch.rand(n, 1, device=device) * (size - w + 1)).long()
        out |= (pos >= start) & (pos < start + w)
    return out


class SpecAugment(nn.Module):
    """``spec (B, C, F, T) -> spec``: frequency and time masks, shared across channels of one clip.

    Masked cells are set to the clip's mean, so the masks do not introduce an out-of-range value.
    """

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, _, f, t = spec.shape
        mask = torch.zeros(b, 1, f, t, dtype=torch.bool, device=spec.device)
        if cfg.freq_masks and cfg.freq_mask_width:
            mask |= _masks(b, cfg.freq_masks, min(cfg.freq_mask_width, f), f, spec.device)[:, None, :, None]
        if cfg.time_masks and cfg.time_mask_width:
            mask |= _masks(b, cfg.time_masks, min(cfg.time_mask_width, t), t, spec.device)[:, None, None, :]
        if not mask.any():
            return spec
        fill = spec.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(mask, fill, spec)
