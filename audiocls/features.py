"""Spectrogram frontends: waveforms in, log-mel images out, as modules with buffers.

The paper's input is three log-mel channels computed with three window/hop pairs (25/10, 50/25, 100/50 ms),
one FFT size (the longest window), 128 mel bins, ``ln(mel + 1e-6)``, each channel resized bilinearly (with
antialiasing, as PIL does) to 128 x 250. :class:`FrontendConfig` describes that and its variants; one window
gives the plain single-channel log-mel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from audiocls.errors import ConfigError

__all__ = ["FrontendConfig", "LogMelFrontend", "build_frontend"]


@dataclass(frozen=True)
class FrontendConfig:
    """How waveforms become images.

    Args:
        windows_ms: one analysis window per output channel, in milliseconds.
        hops_ms: the hop of each channel, in milliseconds (same length as ``windows_ms``).
        n_fft: FFT size in samples; ``None`` takes the longest window (4410 at 44.1 kHz, as the paper).
        n_mels: mel bins.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz; ``None`` is the Nyquist frequency.
        mel_scale: ``slaney`` (librosa's default, the paper's) or ``htk``.
        log: ``ln`` for ``ln(mel + eps)`` (the paper) or ``db`` for ``10 log10(mel + eps)``.
        eps: added before the log.
        size: (n_mels_out, frames_out) each channel is resized to; ``None`` keeps the native frames
            (all channels must then share one hop).
        mean: subtracted after the log (per-dataset normalisation); ``None`` skips it.
        std: divided by after ``mean``; ``None`` skips it.
    """

    windows_ms: tuple[float, ...] = (25.0, 50.0, 100.0)
    hops_ms: tuple[float, ...] = (10.0, 25.0, 50.0)
    n_fft: int | None = None
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: Literal["slaney", "htk"] = "slaney"
    log: Literal["ln", "db"] = "ln"
    eps: float = 1e-6
    size: tuple[int, int] | None = (128, 250)
    mean: float | None = None
    std: float | None = None

    @property
    def channels(self) -> int:
        return len(self.windows_ms)


class LogMelFrontend(nn.Module):
    """Multi-resolution log-mel: ``wave (B, T) -> spec (B, C, n_mels, frames)``, C = len(windows_ms).

    Runs in float32 with autocast off. Every clip is processed on its own values only (no batch statistics),
    so batched output equals per-item output.

    Args:
        config: the frontend settings.
        sample_rate: rate of the incoming waveforms in Hz.
    """

    def __init__(self, config: FrontendConfig, sample_rate: int):
        super().__init__()
        check_frontend(config, sample_rate)
        self.config = config
        self.sample_rate = sample_rate
        wins = [round(w * sample_rate / 1000) for w in config.windows_ms]
        hops = [round(h * sample_rate / 1000) for h in config.hops_ms]
        n_fft = config.n_fft or max(wins)
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n_fft,
                win_length=w,
                hop_length=h,
                f_min=config.f_min,
                f_max=config.f_max,
                n_mels=config.n_mels,
                power=2.0,
                mel_scale=config.mel_scale,
                norm="slaney" if config.mel_scale == "slaney" else None,
            )
            for w, h in zip(wins, hops, strict=True)
        )

    @property
    def out_channels(self) -> int:
        return self.config.channels

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) -> spec (B, C, n_mels, frames), float32."""
        cfg = self.config
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = wave.float()
            chans = []
            for mel in self.mels:
                spec = mel(wave)  # (B, n_mels, frames_c)
                spec = torch.log(spec + cfg.eps) if cfg.log == "ln" else 10.0 * torch.log10(spec + cfg.eps)
                if cfg.size is not None:
                    spec = F.interpolate(
                        spec.unsqueeze(1),
                        size=tuple(cfg.size),
                        mode="bilinear",
                        align_corners=False,
                        antialias=True,
                    ).squeeze(1)
                chans.append(spec)
            out = torch.stack(chans, dim=1)  # (B, C, n_mels, frames)
            if cfg.mean is not None:
                out = out - cfg.mean
            if cfg.std is not None:
                out = out / cfg.std
        return out


def check_frontend(config: FrontendConfig, sample_rate: int, clip_samples: int | None = None) -> None:
    """Raise :class:`ConfigError` naming the value when the settings cannot work."""
    if len(config.windows_ms) != len(config.hops_ms) or not config.windows_ms:
        raise ConfigError(
            f"frontend.windows_ms {list(config.windows_ms)} and frontend.hops_ms {list(config.hops_ms)} "
            "must be non-empty lists of the same length (one window/hop pair per channel)"
        )
    if config.size is None and len(set(config.hops_ms)) > 1:
        raise ConfigError(
            f"frontend.size is null but the hops differ ({list(config.hops_ms)}): channels of different "
            "frame counts cannot be stacked; set frontend.size, e.g. [128, 250]"
        )
    nyquist = sample_rate / 2
    if config.f_max is not None and config.f_max > nyquist:
        raise ConfigError(
            f"frontend.f_max={config.f_max} Hz is above the Nyquist frequency {nyquist:g} Hz of "
            f"sample_rate={sample_rate}; lower f_max or raise sample_rate to at least {2 * config.f_max:g}"
        )
    if clip_samples is not None:
        longest = math.ceil(max(config.windows_ms) * sample_rate / 1000)
        if clip_samples < longest:
            raise ConfigError(
                f"clip of {clip_samples} samples is shorter than the longest window "
                f"({max(config.windows_ms)} ms = {longest} samples); raise clip_seconds"
            )


def build_frontend(config: FrontendConfig | dict, sample_rate: int) -> LogMelFrontend:
    """The frontend for ``config`` (a dict, as stored in a checkpoint, works too)."""
    if isinstance(config, dict):
        config = FrontendConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return LogMelFrontend(config, sample_rate)
