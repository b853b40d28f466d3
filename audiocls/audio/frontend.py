"""Spectrogram frontends: waveforms in, log-mel images out, as modules with buffers.

The paper's input is three log-mel channels computed with three window/hop pairs (25/10, 50/25, 100/50 ms),
one FFT size (the longest window), 128 mel bins, ``ln(mel + 1e-6)``, each channel resized bilinearly (with
antialiasing, as PIL does) to 128 x 250. The official code computes each channel with
``torchaudio.transforms.MelSpectrogram`` at its defaults (HTK mel scale, unnormalised triangles, power 2,
centred frames with reflect padding), which is what the defaults here reproduce. :class:`FrontendConfig`
describes that and its variants; one window gives the plain single-channel log-mel
(:meth:`FrontendConfig.logmel`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from audiocls.errors import ConfigError

if TYPE_CHECKING:
    pass

__all__ = ["FrontendConfig", "LogMelFrontend", "build_frontend", "check_frontend"]

log = logging.getLogger(__name__)


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
        mel_scale: ``htk`` (torchaudio's default, what the paper's code used) or ``slaney`` (librosa's).
        mel_norm: ``slaney`` scales each triangle to unit area (librosa's default); ``None`` leaves them
            unnormalised (torchaudio's default, the paper's).
        log: ``ln`` for ``ln(mel + eps)`` (the paper) or ``db`` for ``10 log10(mel + eps)``.
        eps: added before the log.
        size: (n_mels_out, frames_out) each channel is resized to (bilinear, antialiased like PIL); ``None``
            keeps the native frames (all channels must then share one hop).
        mean: subtracted after the log (per-dataset normalisation), one value or one per channel; ``None``
            skips it. :func:`compute_stats` measures it on a training set.
        std: divided by after ``mean``, one value or one per channel; ``None`` skips it.
    """

    windows_ms: tuple[float, ...] = (25.0, 50.0, 100.0)
    hops_ms: tuple[float, ...] = (10.0, 25.0, 50.0)
    n_fft: int | None = None
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_norm: Literal["slaney"] | None = None
    log: Literal["ln", "db"] = "ln"
    eps: float = 1e-6
    size: tuple[int, int] | None = (128, 250)
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        return len(self.windows_ms)

    @classmethod
    def paper(cls, frames: int = 250, **overrides) -> FrontendConfig:
        """The paper's input: 3 channels (25/10, 50/25, 100/50 ms), 128 mels, ln, resized to 128 x ``frames``.

        ``frames`` is 250 for ESC-50 and UrbanSound8K, 1500 for GTZAN; n_fft follows the sample rate (the
        100 ms window: 4410 at 44.1 kHz, 2205 at 22.05 kHz).
        """
        return replace(cls(size=(128, frames)), **overrides)

    @classmethod
    def logmel(
        cls,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_mels: int = 128,
        log: Literal["ln", "db"] = "db",
        size: tuple[int, int] | None = None,
        **overrides,
    ) -> FrontendConfig:
        """A plain single-channel log-mel (B, 1, n_mels, frames); timm adapts the stem to one channel."""
        return cls(windows_ms=(window_ms,), hops_ms=(hop_ms,), n_mels=n_mels, log=log, size=size, **overrides)


class LogMelFrontend(nn.Module):
    """Multi-resolution log-mel: ``wave (B, T) -> spec (B, C, n_mels, frames)``, C = len(windows_ms).

    Runs in float32 with autocast off. Every clip is processed on its own values only (no batch statistics),
    so batched output equals per-item output. Windows and mel filterbanks are buffers (``.to()`` moves them).

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
                norm=config.mel_norm,
            )
            for w, h in zip(wins, hops, strict=True)
        )
        c = config.channels
        self.register_buffer("mean", _per_channel(config.mean, c, 0.0), persistent=False)
        self.register_buffer("std", _per_channel(config.std, c, 1.0), persistent=False)

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
                        spec.unsqueeze(1),  # (B, 1, n_mels, frames_c)
                        size=tuple(cfg.size),
                        mode="bilinear",
                        align_corners=False,
                        antialias=True,
                    ).squeeze(1)
                chans.append(spec)
            out = torch.stack(chans, dim=1)  # (B, C, n_mels, frames)
            if cfg.mean is not None:
                out = out - self.mean
            if cfg.std is not None:
                out = out / self.std
        return out


def _per_channel(value: float | tuple[float, ...] | None, channels: int, default: float) -> torch.Tensor:
    """(C, 1, 1) float32 from one value, one value per channel, or ``None`` (the default)."""
    values = [default] * channels if value is None else value
    if isinstance(values, int | float):
        values = [float(values)] * channels
    return torch.tensor([float(v) for v in values], dtype=torch.float32).view(channels, 1, 1)


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
    if config.size is not None and (len(config.size) != 2 or min(config.size) < 1):
        raise ConfigError(f"frontend.size={list(config.size)} must be two positive sizes [n_mels_out, frames_out]")
    nyquist = sample_rate / 2
    if config.f_max is not None and config.f_max > nyquist:
        raise ConfigError(
            f"frontend.f_max={config.f_max} Hz is above the Nyquist frequency {nyquist:g} Hz of "
            f"sample_rate={sample_rate}; lower f_max or raise sample_rate to at least {2 * config.f_max:g}"
        )
    longest = math.ceil(max(config.windows_ms) * sample_rate / 1000)
    if config.n_fft is not None and config.n_fft < longest:
        raise ConfigError(
            f"frontend.n_fft={config.n_fft} is shorter than the longest window ({max(config.windows_ms)} ms = "
            f"{longest} samples at {sample_rate} Hz); set n_fft to at least {longest} or null"
        )
    for name, value in (("mean", config.mean), ("std", config.std)):
        if isinstance(value, tuple | list) and len(value) != config.channels:
            raise ConfigError(
                f"frontend.{name} has {len(value)} values but the frontend has {config.channels} channels; "
                "give one value or one per channel"
            )
    std = config.std if isinstance(config.std, tuple | list) else [config.std]
    if any(s is not None and s <= 0 for s in std):
        raise ConfigError(f"frontend.std={config.std} must be positive")
    if clip_samples is not None and clip_samples < longest:
        raise ConfigError(
            f"clip of {clip_samples} samples is shorter than the longest window "
            f"({max(config.windows_ms)} ms = {longest} samples); raise clip_seconds"
        )


def build_frontend(config: FrontendConfig | dict, sample_rate: int) -> LogMelFrontend:
    """The frontend for ``config`` (a dict, as stored in a checkpoint, works too)."""
    if isinstance(config, dict):
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        if config.get("mel_scale") == "slaney" and "mel_norm" not in config:
            config["mel_norm"] = "slaney"  # checkpoints from before mel_norm existed tied the two together
        config = FrontendConfig(**config)
    return LogMelFrontend(config, sample_rate)
