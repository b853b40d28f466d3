"""The log-mel frontend from export-friendly ops only (DFT as conv1d, resize as matrices), for ONNX and TorchScript."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from audiocls.audio.frontend import LogMelFrontend, log_mel, normalise
from audiocls.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DFTLogMel"]


def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix R with ``R @ x`` = antialiased bilinear resize of ``x`` along one axis.

    ``F.interpolate(..., antialias=True)`` is separable and linear, so resizing the identity gives it exactly.
    """
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, 1, n_in)  # n_in images of 1 x n_in
    out = F.interpolate(eye.float(), size=(1, n_out), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(n_in, n_out).T.contiguous()


class DFTLogMel(nn.Module):
    """The log-mel of a :class:`~audiocls.audio.frontend.LogMelFrontend` from export-friendly ops only.

    ``wave (B, T) -> spec (B, C, n_mels, frames)`` for one fixed T: per channel, centred reflect padding as a
    fixed gather, the windowed DFT as ``conv1d`` (kernel = window x cos / sin, trimmed to the window's
    non-zero span, stride = hop), power, mel filterbank, log, and the resize as ``R_mel @ S @ R_time^T``.
    Equal to the frontend up to float32 rounding (see ``tests/test_export.py``).

    Args:
        frontend: the training frontend; its windows and filterbanks are copied.
        num_samples: T, the input length the module is built for (the training clip).
    """

    def __init__(self, frontend: LogMelFrontend, num_samples: int):
        super().__init__()
        cfg = frontend.config
        self.config, self.num_samples = cfg, int(num_samples)
        self.hops: list[int] = []
        self.offsets: list[int] = []
        self.frames: list[int] = []
        n_fft = frontend.n_fft
        for c, hop in enumerate(frontend.hops):
            win = frontend.win_lengths[c]
            window = torch.zeros(n_fft, dtype=torch.float64)
            left = (n_fft - win) // 2  # where torch.stft puts a shorter window inside the n_fft points
            window[left : left + win] = frontend.window(c).double().cpu()
            nz = torch.nonzero(window).flatten()
            lo, hi = int(nz.min()), int(nz.max()) + 1  # the window's support inside the n_fft frame
            k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
            n = torch.arange(lo, hi, dtype=torch.float64)[None, :]
            angle = 2 * math.pi * k * n / n_fft
            basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window[lo:hi]  # (2 * n_freq, hi - lo)
            self.register_buffer(f"basis{c}", basis.float().unsqueeze(1))
            pad = n_fft // 2
            if self.num_samples <= pad:
                raise ConfigError(f"clip of {self.num_samples} samples is too short for n_fft={n_fft}")
            idx = torch.arange(-pad, self.num_samples + pad).abs()
            idx = torch.where(idx >= self.num_samples, 2 * (self.num_samples - 1) - idx, idx)  # reflect
            self.register_buffer(f"index{c}", idx[lo:])  # the gather also drops the samples before the support
            frames = 1 + self.num_samples // hop
            self.register_buffer(f"fb{c}", frontend.fb.T.contiguous().float().cpu())  # (n_mels, n_freq)
            if cfg.size is not None:
                self.register_buffer(f"rmel{c}", _resize_matrix(cfg.n_mels, cfg.size[0]))
                self.register_buffer(f"rtime{c}", _resize_matrix(frames, cfg.size[1]))
            self.hops.append(hop)
            self.offsets.append(lo)
            self.frames.append(frames)
        self.register_buffer("mean", frontend.mean.detach().float().cpu().clone())  # (C, 1, 1)
        self.register_buffer("std", frontend.std.detach().float().cpu().clone())

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) -> spec (B, C, n_mels, frames), float32."""
        cfg = self.config
        chans = []
        for c, (hop, frames) in enumerate(zip(self.hops, self.frames, strict=True)):
            padded = wave[:, getattr(self, f"index{c}")].unsqueeze(1)  # (B, 1, T + 2 pad - lo)
            z = F.conv1d(padded, getattr(self, f"basis{c}"), stride=hop)[..., :frames]  # (B, 2 n_freq, frames)
            re, im = z.chunk(2, dim=1)
            power = re * re + im * im  # (B, n_freq, frames)
            mel = torch.matmul(getattr(self, f"fb{c}"), power)  # (B, n_mels, frames)
            spec = log_mel(mel, cfg)
            if cfg.size is not None:
                spec = torch.matmul(torch.matmul(getattr(self, f"rmel{c}"), spec), getattr(self, f"rtime{c}").T)
            chans.append(spec)
        return normalise(torch.stack(chans, dim=1), self.mean, self.std, cfg)  # (B, C, n_mels, frames)
