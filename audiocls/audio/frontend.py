"""Spectrogram frontends: waveforms in, log-mel images out, as modules with buffers.

The paper's input is three log-mel channels computed with three window/hop pairs (25/10, 50/25, 100/50 ms),
one FFT size (the longest window), 128 mel bins, ``ln(mel + 1e-6)``, each channel resized bilinearly (with
antialiasing, as PIL does) to 128 x 250. The official code computes each channel with
``torchaudio.transforms.MelSpectrogram`` at its defaults (HTK mel scale, unnormalised triangles, power 2,
centred frames with reflect padding), which is what the defaults here reproduce. :class:`FrontendConfig`
describes that and its variants; one window gives the plain single-channel log-mel
(:meth:`FrontendConfig.logmel`). The settings and their checks are in :mod:`audiocls.audio.frontend_config`
(imported here too).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from audiocls.audio.frontend_config import FrontendConfig, check_frontend, per_channel
from audiocls.audio.spectral import PitchTime, stretch_frames, warp_bands, warp_filterbank
from audiocls.errors import ConfigError

__all__ = ["FrontendConfig", "LogMelFrontend", "build_frontend", "check_frontend", "log_mel", "normalise"]

log = logging.getLogger(__name__)

#: warped filterbanks kept per frontend (one per pitch value and device, ~1 MB each at 44.1 kHz)
WARPED_CACHE = 64

#: cost of one more matmul in the banded mel projection, in multiply-adds per frame (measured on a 2-core CPU:
#: fewer, wider groups beat many narrow ones until each call costs about this much)
CALL_COST = 20000


class LogMelFrontend(nn.Module):
    """Multi-resolution log-mel: ``wave (B, T) -> spec (B, C, n_mels, frames)``, C = len(windows_ms).

    Runs in float32 with autocast off. Every clip is processed on its own values only (no batch statistics),
    so batched output equals per-item output. Windows and the mel filterbank are buffers (``.to()`` moves them).

    Per channel: centred frames with reflect padding (as ``torch.stft(center=True)``), the window, a real FFT of
    ``n_fft`` points, the power ``re^2 + im^2``, the mel projection, ``log``, the resize. The power of a frame does
    not depend on where the window sits inside the ``n_fft`` points (a circular shift changes the phase only), so
    each frame is just the window's ``win_length`` samples, zero-padded by the FFT. All channels share one
    filterbank (one ``n_fft``); the projection multiplies each group of filters by its own band of bins only.
    On a CPU the frames go through the FFT and the projection in chunks of about ``chunk_frames`` frames, so the
    (frames, n_fft // 2 + 1) spectrum stays in cache; other devices take each channel whole.

    ``forward(wave, pitch_time)`` also applies the spectral pitch shift and time stretch of
    :mod:`audiocls.audio.spectral` (``augment.pitch_time_mode: spectral``): a clip shifted by ``s`` semitones is
    projected by a warped filterbank (one per pitch value, built once), and a clip stretched by a rate other
    than 1 gets one resampling of its frame axis instead of the resize. Clips at 0 semitones and rate 1 take
    the plain path, so their output is the plain frontend's.

    Args:
        config: the frontend settings.
        sample_rate: rate of the incoming waveforms in Hz.
        chunk_frames: frames per chunk on a CPU (a speed setting; the output does not depend on it).
    """

    def __init__(self, config: FrontendConfig, sample_rate: int, chunk_frames: int = 256):
        super().__init__()
        check_frontend(config, sample_rate)
        self.config, self.sample_rate, self.chunk_frames = config, sample_rate, chunk_frames
        self.win_lengths = [round(w * sample_rate / 1000) for w in config.windows_ms]
        self.hops = [round(h * sample_rate / 1000) for h in config.hops_ms]
        self.n_fft = config.n_fft or max(self.win_lengths)
        for c, w in enumerate(self.win_lengths):
            self.register_buffer(f"window{c}", torch.hann_window(w), persistent=False)
        fb = AF.melscale_fbanks(
            self.n_fft // 2 + 1,
            config.f_min,
            config.f_max if config.f_max is not None else sample_rate / 2,
            config.n_mels,
            sample_rate,
            config.mel_norm,
            config.mel_scale,
        )
        self.register_buffer("fb", fb, persistent=False)  # (n_freq, n_mels)
        self.register_buffer("fb2", fb.repeat_interleave(2, dim=0), persistent=False)  # (2 n_freq, n_mels)
        self.bands = _bands(fb)
        self._warped: dict[tuple[float, str, torch.dtype], tuple[torch.Tensor, list[tuple[int, int, int, int]]]] = {}
        c = config.channels
        self.register_buffer("mean", per_channel(config.mean, c, 0.0), persistent=False)
        self.register_buffer("std", per_channel(config.std, c, 1.0), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.config.channels

    def window(self, c: int) -> torch.Tensor:
        """The (win_length,) Hann window of channel ``c``."""
        return getattr(self, f"window{c}")

    def pad(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) -> (B, T + 2 (n_fft // 2)), reflect-padded as ``torch.stft(center=True)``; every channel's
        frames are views of it. By concatenation: a copy, cheaper than the reflection_pad kernel."""
        t, p = wave.shape[-1], self.n_fft // 2
        if p >= t:
            raise ConfigError(
                f"clip of {t} samples is too short for n_fft={self.n_fft} (centred frames pad {p} samples)"
            )
        return torch.cat([wave[:, 1 : p + 1].flip(-1), wave, wave[:, t - 1 - p : t - 1].flip(-1)], dim=-1)

    def frames(self, wave: torch.Tensor, c: int, padded: torch.Tensor | None = None) -> torch.Tensor:
        """The windowed samples of channel ``c``'s centred frames, as a view: (B, frames, win_length).

        ``padded`` is ``self.pad(wave)`` when the caller has it already (one copy for all channels)."""
        win, hop = self.win_lengths[c], self.hops[c]
        padded = self.pad(wave) if padded is None else padded
        # torch.stft puts the window at (n_fft - win) // 2 inside each n_fft frame of the padded wave
        return padded[:, (self.n_fft - win) // 2 :].unfold(-1, win, hop)[:, : 1 + wave.shape[-1] // hop]

    def mel(self, frames: torch.Tensor, c: int) -> torch.Tensor:
        """(..., win_length) frames of channel ``c`` -> (..., n_mels) mel power.

        The windowed frame sits where ``torch.stft`` puts it inside the ``n_fft`` points (the same FFT input, so
        the same float32 rounding in quiet bins); the power is the squares of the interleaved re/im parts,
        projected by a filterbank with every row doubled, one band of bins per block of filters.
        """
        spec = self.spectrum(frames, c)
        squares = spec.square() if spec.requires_grad else spec.square_()
        squares = squares.flatten(-2)  # (..., 2 n_freq): re^2, im^2 of each bin
        fb2 = self.fb2
        return torch.cat(
            [squares[..., 2 * lo : 2 * hi] @ fb2[2 * lo : 2 * hi, m0:m1] for lo, hi, m0, m1 in self.bands], -1
        )

    def filterbank(self, semitones: float = 0.0) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """The filterbank (n_freq, n_mels) and its bands for a power spectrum shifted by ``semitones``: ``fb``
        itself at 0, else :func:`~audiocls.audio.spectral.warp_filterbank`, built once per value, device and dtype
        (without autograd)."""
        if semitones == 0:
            return self.fb, self.bands
        key = (float(semitones), str(self.fb.device), self.fb.dtype)
        if key not in self._warped:
            if len(self._warped) >= WARPED_CACHE:
                self._warped.pop(next(iter(self._warped)))
            with torch.no_grad():
                warped = warp_filterbank(self.fb, semitones)
            self._warped[key] = (warped, warp_bands(warped, self.bands))
        return self._warped[key]

    def spectrum(self, frames: torch.Tensor, c: int) -> torch.Tensor:
        """(..., win_length) frames of channel ``c`` -> (..., n_freq, 2) real and imaginary parts of the FFT, the
        windowed frame placed where ``torch.stft`` puts it inside the ``n_fft`` points."""
        win = self.win_lengths[c]
        left = (self.n_fft - win) // 2
        framed = F.pad(frames * self.window(c), (left, self.n_fft - win - left))
        return torch.view_as_real(torch.fft.rfft(framed))

    def power(self, frames: torch.Tensor, c: int) -> torch.Tensor:
        """(..., win_length) frames of channel ``c`` -> (..., n_freq) power spectrum, as :meth:`mel` computes it."""
        return self.spectrum(frames, c).square().sum(-1)

    def grouped_mel(self, frames: torch.Tensor, c: int, semitones: list[float]) -> torch.Tensor:
        """(B, frames, win_length) -> (B, frames, n_mels) with clip ``i``'s power shifted by ``semitones[i]``: the
        power of all frames at once, then one banded projection per pitch value over its clips (devices other
        than the CPU, and autograd)."""
        power = self.power(frames, c)
        values = torch.tensor(semitones, dtype=torch.float64)
        out = power.new_zeros(*power.shape[:-1], self.fb.shape[1])
        for value in sorted(set(semitones)):
            sel = torch.nonzero(values == value).flatten().to(power.device)
            fb, bands = self.filterbank(value)
            p = power.index_select(0, sel)
            out = out.index_copy(0, sel, torch.cat([p[..., lo:hi] @ fb[lo:hi, m0:m1] for lo, hi, m0, m1 in bands], -1))
        return out

    def mel_power(
        self, wave: torch.Tensor, c: int, padded: torch.Tensor | None = None, semitones: list[float] | None = None
    ) -> torch.Tensor:
        """wave (B, T) -> mel power (B, frames, n_mels) of channel ``c``, chunked on a CPU (``padded``: as in
        :meth:`frames`; ``semitones``: one spectral pitch shift per clip, or ``None``).

        Without autograd, each chunk's windowed frames are written straight into the window's columns of one
        zero-filled (chunk, n_fft) FFT buffer (no padding copy per chunk), the power is ``re^2 + im^2`` of the
        FFT, and each band's projection writes into its columns of one (B frames, n_mels) output (no ``cat``).
        With ``semitones``, a chunk holds clips of one pitch value and is projected by its warped filterbank.
        """
        frames = self.frames(wave, c, padded)
        b, n, win = frames.shape
        if semitones is not None and not any(semitones):
            semitones = None
        # out= writes into views: no autograd, and torch.jit.trace does not record them; a traced module takes
        # the batch whole (its Python chunk list would fix the batch size)
        plain = torch.jit.is_tracing() or (torch.is_grad_enabled() and (wave.requires_grad or self.fb.requires_grad))
        if semitones is not None and (plain or wave.device.type != "cpu"):
            return self.grouped_mel(frames, c, semitones)
        pitch = semitones or [0.0] * b
        chunk = self.chunk_frames if wave.device.type == "cpu" else b * n
        if n >= chunk:  # one clip at a time, its frames in near-equal parts
            step = math.ceil(n / math.ceil(n / chunk))
            parts = [(frames[i, j : j + step], i * n + j, pitch[i]) for i in range(b) for j in range(0, n, step)]
        else:  # several whole clips of one pitch value at a time
            step, parts, i = max(1, chunk // n), [], 0
            while i < b:
                j = i + 1
                while j < b and j - i < step and pitch[j] == pitch[i]:
                    j += 1
                parts.append((frames[i:j], i * n, pitch[i]))
                i = j
        if plain:
            if torch.jit.is_tracing() or b * n <= chunk:
                return self.mel(frames, c)
            return torch.cat([self.mel(part, c).reshape(-1, self.fb.shape[1]) for part, _, _ in parts]).view(b, n, -1)
        left = (self.n_fft - win) // 2
        rows = max(part[..., 0].numel() for part, _, _ in parts)
        buf = wave.new_zeros(rows, self.n_fft)
        out = wave.new_empty(b * n, self.fb.shape[1])
        window = self.window(c)
        for part, row, value in parts:
            r = part[..., 0].numel()
            torch.mul(part, window, out=buf[:r].view(*part.shape[:-1], self.n_fft)[..., left : left + win])
            spec = torch.view_as_real(torch.fft.rfft(buf[:r]))  # (r, n_freq, 2)
            spec.square_()
            power = spec[..., 0] + spec[..., 1]  # (r, n_freq)
            fb, bands = self.filterbank(value)
            for lo, hi, m0, m1 in bands:
                torch.mm(power[:, lo:hi], fb[lo:hi, m0:m1], out=out[row : row + r, m0:m1])
        return out.view(b, n, -1)

    def resize(self, spec: torch.Tensor, rates: torch.Tensor | None = None) -> torch.Tensor:
        """spec (B, n_mels, frames_c) -> (B, *size): the antialiased bilinear resize (none when ``size`` is null);
        clips whose ``rates`` (B,) differ from 1 are time-stretched in the same resampling
        (:func:`~audiocls.audio.spectral.stretch_frames`), silence being ``log_mel(0)``."""
        size = self.config.size
        if rates is None or not bool((rates != 1).any()):
            if size is None:
                return spec
            return F.interpolate(
                spec.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False, antialias=True
            ).squeeze(1)
        rates = rates.cpu()
        moved, kept = torch.nonzero(rates != 1).flatten(), torch.nonzero(rates == 1).flatten()
        src = spec.index_select(0, moved.to(spec.device))
        if size is not None and size[0] != src.shape[1]:  # the mel axis first, as the separable resize does
            src = F.interpolate(
                src.unsqueeze(1), size=(size[0], src.shape[-1]), mode="bilinear", align_corners=False, antialias=True
            ).squeeze(1)
        fill = float(log_mel(torch.zeros(()), self.config))
        stretched = stretch_frames(src, rates[moved], size[1] if size is not None else spec.shape[-1], fill)
        out = spec.new_empty(spec.shape[0], *stretched.shape[1:])
        out = out.index_copy(0, moved.to(spec.device), stretched)
        if len(kept):
            idx = kept.to(spec.device)
            out = out.index_copy(0, idx, self.resize(spec.index_select(0, idx)))
        return out

    def forward(self, wave: torch.Tensor, pitch_time: PitchTime | None = None) -> torch.Tensor:
        """wave (B, T) -> spec (B, C, n_mels, frames), float32; ``pitch_time``: per-clip spectral pitch shift and
        time stretch (see the class), or ``None``."""
        cfg = self.config
        semitones, rates = _pitch_time(pitch_time, wave.shape[0])
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = wave.float()
            chans, padded = [], self.pad(wave)
            for c in range(cfg.channels):
                spec = log_mel(self.mel_power(wave, c, padded, semitones), cfg).transpose(1, 2)  # (B, n_mels, n_c)
                chans.append(self.resize(spec, rates))
            return self.normalise(torch.stack(chans, dim=1))  # (B, C, n_mels, frames)

    def normalise(self, spec: torch.Tensor) -> torch.Tensor:
        """The normalisation tail, ``(spec - mean) / std`` as configured: spec (..., C, F, T)."""
        return normalise(spec, self.mean, self.std, self.config)


def _pitch_time(pitch_time: PitchTime | None, batch: int) -> tuple[list[float] | None, torch.Tensor | None]:
    """Per-clip semitones as a list (``None`` when all are 0) and rates as a CPU tensor (``None`` when all are 1)."""
    if pitch_time is None:
        return None, None
    semitones, rates = (torch.as_tensor(v).detach().double().cpu().reshape(-1) for v in pitch_time)
    if len(semitones) != batch or len(rates) != batch:
        raise ValueError(
            f"pitch_time has {len(semitones)} semitones and {len(rates)} rates for a batch of {batch} clips; "
            "give one of each per clip"
        )
    return (semitones.tolist() if bool(semitones.ne(0).any()) else None), (rates if bool(rates.ne(1).any()) else None)


def log_mel(mel: torch.Tensor, config: FrontendConfig) -> torch.Tensor:
    """``ln(mel + eps)`` or ``10 log10(mel + eps)`` as ``config.log`` says; any shape."""
    return torch.log(mel + config.eps) if config.log == "ln" else 10.0 * torch.log10(mel + config.eps)


def normalise(spec: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, config: FrontendConfig) -> torch.Tensor:
    """``spec - mean`` where ``config.mean`` is set, then ``/ std`` where ``config.std`` is: spec (..., C, F, T),
    mean and std (C, 1, 1). The one normalisation tail of :class:`LogMelFrontend` and its export twin."""
    if config.mean is not None:
        spec = spec - mean.to(spec.device)
    if config.std is not None:
        spec = spec / std.to(spec.device)
    return spec


def _bands(fb: torch.Tensor, call_cost: int = CALL_COST) -> list[tuple[int, int, int, int]]:
    """Groups of consecutive filters for the banded projection: (lo, hi, m0, m1), filters m0:m1 zero outside bins lo:hi.

    The grouping minimises the sum over groups of ``call_cost + (hi - lo) * (m1 - m0)`` (one matmul per group),
    by dynamic programming over the filter boundaries.
    """
    nonzero = fb != 0  # (n_freq, n_mels)
    n_mels = fb.shape[1]
    rows = [torch.nonzero(nonzero[:, m]).flatten() for m in range(n_mels)]
    lo = [int(r.min()) if len(r) else 0 for r in rows]
    hi = [int(r.max()) + 1 if len(r) else 1 for r in rows]
    best, start = [0] + [math.inf] * n_mels, [0] * (n_mels + 1)
    for j in range(1, n_mels + 1):
        for i in range(j):
            cost = best[i] + call_cost + (max(hi[i:j]) - min(lo[i:j])) * (j - i)
            if cost < best[j]:
                best[j], start[j] = cost, i
    bands, j = [], n_mels
    while j:
        i = start[j]
        bands.append((min(lo[i:j]), max(hi[i:j]), i, j))
        j = i
    return bands[::-1]


def build_frontend(config: FrontendConfig | dict, sample_rate: int) -> LogMelFrontend:
    """The frontend for ``config`` (a dict, as stored in a checkpoint, works too)."""
    if isinstance(config, dict):
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        config = FrontendConfig(**config)
    return LogMelFrontend(config, sample_rate)
