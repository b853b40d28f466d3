"""The settings of a spectrogram frontend (:class:`FrontendConfig`) and their checks (:func:`check_frontend`).

The frontend itself is :class:`audiocls.audio.frontend.LogMelFrontend`; both names are importable from
:mod:`audiocls.audio.frontend` too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Literal

import torch

from audiocls.errors import ConfigError

__all__ = ["FrontendConfig", "check_frontend", "check_mel_bands", "empty_mel_bands", "per_channel"]


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
            skips it. ``data.normalize: train`` measures it on the training split.
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


def empty_mel_bands(config: FrontendConfig, sample_rate: int, n_mels: int | None = None) -> int:
    """How many of the ``n_mels`` (default ``config.n_mels``) mel bands contain no FFT bin, so their row of the
    filterbank is all zero (torchaudio's "At least one mel filterbank has all zero values"): their output is
    ``log(eps)`` whatever the audio."""
    import torchaudio.functional as AF

    n_fft = config.n_fft or max(round(w * sample_rate / 1000) for w in config.windows_ms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the condition is computed here, not read from the warning
        fb = AF.melscale_fbanks(
            n_fft // 2 + 1,
            config.f_min,
            config.f_max if config.f_max is not None else sample_rate / 2,
            n_mels or config.n_mels,
            sample_rate,
            config.mel_norm,
            config.mel_scale,
        )
    return int((fb.max(dim=0).values == 0).sum())


def check_mel_bands(config: FrontendConfig, sample_rate: int) -> None:
    """:class:`ConfigError` when a mel band holds no FFT bin (see :func:`empty_mel_bands`), naming the largest
    ``n_mels`` that works at this sample rate and FFT size.

    Checked where a dataset is configured (training), not when a frontend is rebuilt from a checkpoint, so a
    model trained before this check still loads."""
    empty = empty_mel_bands(config, sample_rate)
    if not empty:
        return
    fits = next((n for n in range(config.n_mels - 1, 0, -1) if not empty_mel_bands(config, sample_rate, n)), 0)
    n_fft = config.n_fft or max(round(w * sample_rate / 1000) for w in config.windows_ms)
    higher = next(
        (r for r in (16000, 22050, 32000, 44100, 48000) if r > sample_rate and not empty_mel_bands(config, r)), None
    )
    rate = f", raise data.sample_rate to {higher}" if higher and config.n_fft is None else ""
    raise ConfigError(
        f"data.sample_rate={sample_rate} is too low for data.frontend.n_mels={config.n_mels}: {empty} mel bands "
        f"fall between two FFT bins ({sample_rate / n_fft:g} Hz apart, n_fft={n_fft}) and would stay empty; "
        f"lower data.frontend.n_mels to at most {fits}{rate}, or use a longer window "
        "(data.frontend.windows_ms, data.frontend.n_fft)"
    )


def per_channel(value: float | tuple[float, ...] | None, channels: int, default: float) -> torch.Tensor:
    """(C, 1, 1) float32 from one value, one value per channel, or ``None`` (the default)."""
    values = [default] * channels if value is None else value
    if isinstance(values, int | float):
        values = [float(values)] * channels
    return torch.tensor([float(v) for v in values], dtype=torch.float32).view(channels, 1, 1)
