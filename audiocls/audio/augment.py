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

That is ``pitch_time_mode: vocoder``. The default, ``pitch_time_mode: spectral``, draws the same values but leaves
the waveform's pitch and tempo alone: the frontend scales the frequency axis of each frame's power spectrum and
resamples the frame axis (:mod:`audiocls.audio.spectral`), at almost no cost; :meth:`WaveAugment.with_pitch_time`
hands it the draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from audiocls.audio.spectral import PitchTime
from audiocls.audio.stretch import pitch_time
from audiocls.errors import ConfigError

__all__ = ["AugmentConfig", "WaveAugment", "SpecAugment", "check_augment", "steps_on", "WAVE_STEPS"]

#: what each field of :class:`AugmentConfig` is, in its ``metadata["acts_on"]``: a step on the waveform (before
#: the frontend), a step on the spectrogram (after it), or an option of a step (not a step itself)
WAVE, SPEC, OPTION = "wave", "spec", "option"


def _field(default: Any, acts_on: str) -> Any:
    return field(default=default, metadata={"acts_on": acts_on})


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation settings (0 or ``None`` disables a step).

    Args:
        gain_db: random gain drawn uniformly in [-gain_db, +gain_db] dB per clip.
        shift: circular time shift by a uniform fraction of the clip in [-shift, +shift], per clip.
        freq_masks: number of frequency masks per clip.
        freq_mask_width: maximum width of each frequency mask (widths drawn in 0..max): an integer counts mel
            bins; a float below 1 is a share of the spectrogram's bins (0.125: 16 of 128, 8 of 64), so one recipe
            fits every image size.
        time_masks: number of time masks per clip.
        time_mask_width: maximum width of each time mask, in frames, or a float below 1 as a share of the frames
            (0.1: 25 of 250, 10 of 96).
        time_roll: circular roll of the spectrogram along its frames by a uniform fraction of them in
            [-time_roll, +time_roll], per clip (1.0: any offset); the spectrogram-side twin of ``shift``, applied
            before the masks.
        pitch_shift: [low, high] semitones; each clip draws a value of the grid ``low + k * pitch_step``
            uniformly (the paper: [-2, 2], integer steps). ``None`` disables it.
        pitch_step: grid of the pitch draws, in semitones (1.0 is the paper's integers; 0.1 is near-continuous).
        time_stretch: [low, high] tempo rate drawn uniformly per clip; above 1 is faster (the paper: [0.9, 1.2]).
            ``None`` disables it.
        pitch_time_p: probability that a clip gets pitch shift and time stretch. The paper trained on the
            original set plus one augmented copy, i.e. half of what a model sees is augmented: 0.5.
        stretch_n_fft: FFT size of the phase vocoder in samples (librosa's default 2048; hop n_fft / 4).
        pitch_time_mode: ``spectral`` (the default: the draws applied by the frontend to the power spectrum and
            the frame axis; no vocoder cost, no phase artefacts; gain and shift then act before the pitch/time
            change) or ``vocoder`` (the reference, what the paper's code did: phase vocoder + resampling of the
            waveform, as librosa; 2-3x the cost of augmentation + frontend on a CPU). On ESC-10 fold 1 the two
            trained alike (docs/RESULTS.md, recipe ablations); the paper configs keep ``vocoder``.
    """

    gain_db: float = _field(0.0, WAVE)
    shift: float = _field(0.0, WAVE)
    freq_masks: int = _field(0, SPEC)
    freq_mask_width: int | float = _field(0, OPTION)
    time_masks: int = _field(0, SPEC)
    time_mask_width: int | float = _field(0, OPTION)
    time_roll: float = _field(0.0, SPEC)
    pitch_shift: tuple[float, float] | None = _field(None, WAVE)
    pitch_step: float = _field(1.0, OPTION)
    time_stretch: tuple[float, float] | None = _field(None, WAVE)
    pitch_time_p: float = _field(1.0, OPTION)
    stretch_n_fft: int = _field(2048, OPTION)
    pitch_time_mode: Literal["vocoder", "spectral"] = _field("spectral", OPTION)


#: the steps that act on the waveform, before the frontend (a stored spectrogram cannot have them), read from the
#: fields' ``acts_on``: a new waveform step declared there is known to every check that needs this list
WAVE_STEPS: tuple[str, ...] = tuple(f.name for f in fields(AugmentConfig) if f.metadata["acts_on"] == WAVE)


def steps_on(config: AugmentConfig, acts_on: str = WAVE) -> dict[str, Any]:
    """The steps of ``config`` that act on ``acts_on`` (``wave``/``spec``) and are switched on, by name."""
    names = [f.name for f in fields(config) if f.metadata["acts_on"] == acts_on]
    return {name: getattr(config, name) for name in names if getattr(config, name)}


def check_augment(config: AugmentConfig) -> None:
    """Raise :class:`ConfigError` naming the value when a setting cannot work."""
    bad = []
    for name in ("gain_db", "shift", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "time_roll"):
        if getattr(config, name) < 0:
            bad.append(f"augment.{name}={getattr(config, name)} must be >= 0 (0 disables it)")
    for name in ("freq_mask_width", "time_mask_width"):
        value = getattr(config, name)
        if isinstance(value, float) and value >= 1 and not value.is_integer():
            bad.append(f"augment.{name}={value}: give a whole number of bins/frames or a share below 1")
    if config.shift > 1:
        bad.append(f"augment.shift={config.shift} is a fraction of the clip: choose a value in [0, 1]")
    if config.time_roll > 1:
        bad.append(f"augment.time_roll={config.time_roll} is a fraction of the frames: choose a value in [0, 1]")
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
    if config.pitch_time_mode not in ("vocoder", "spectral"):
        bad.append(f"augment.pitch_time_mode={config.pitch_time_mode!r}: choose 'vocoder' or 'spectral'")
    if config.stretch_n_fft < 16:
        bad.append(f"augment.stretch_n_fft={config.stretch_n_fft} is too small: use e.g. 2048 (librosa's default)")
    if bad:
        raise ConfigError("; ".join(bad))


class _Augment(nn.Module):
    """Base of the two augmentations: checks and keeps the settings; each is the identity in ``eval()`` mode."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        check_augment(config)
        self.config = config


class WaveAugment(_Augment):
    """``wave (B, T) -> wave (B, T)``: pitch shift + time stretch, random gain, circular shift.

    Each clip draws its own parameters, on the waveform's device. Identity in ``eval()`` mode.

    Args:
        config: the augmentation settings.
    """

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The augmented waveform. With ``pitch_time_mode: spectral`` and pitch/time on, use
        :meth:`with_pitch_time` and pass its draws to the frontend (this raises instead of dropping them)."""
        if self.training and self.config.pitch_time_mode == "spectral" and self._pitch_time_on:
            raise RuntimeError(
                "WaveAugment with augment.pitch_time_mode=spectral leaves pitch/time to the frontend: call "
                "with_pitch_time(wave) and pass its second value to LogMelFrontend(wave, pitch_time)"
            )
        return self.with_pitch_time(wave)[0]

    @property
    def _pitch_time_on(self) -> bool:
        return self.config.pitch_shift is not None or self.config.time_stretch is not None

    def draw(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The pitch/time draws of a batch: which clips (indices), their rates and semitones (float64), or
        ``None`` when none is chosen or pitch/time is off. One random sequence for both modes."""
        cfg = self.config
        if not self._pitch_time_on:
            return None
        chosen = torch.nonzero(torch.rand(batch, device=device) < cfg.pitch_time_p).squeeze(1)
        n = len(chosen)
        if not n:
            return None
        rates = torch.ones(n, device=device, dtype=torch.float64)
        if cfg.time_stretch is not None:
            lo, hi = cfg.time_stretch
            rates = lo + torch.rand(n, device=device, dtype=torch.float64) * (hi - lo)
        semis = torch.zeros(n, device=device, dtype=torch.float64)
        if cfg.pitch_shift is not None:
            lo, hi = cfg.pitch_shift
            steps = math.floor((hi - lo) / cfg.pitch_step + 1e-9)
            semis = lo + torch.randint(0, steps + 1, (n,), device=device).double() * cfg.pitch_step
        return chosen, rates, semis

    def with_pitch_time(self, wave: torch.Tensor) -> tuple[torch.Tensor, PitchTime | None]:
        """``wave (B, T) -> (wave, pitch_time)``: in ``vocoder`` mode the fully augmented waveform and ``None``;
        in ``spectral`` mode the waveform with gain and shift only, and the per-clip :class:`PitchTime` (0
        semitones and rate 1 for clips not chosen) for ``LogMelFrontend.forward``. Identity in ``eval()`` mode."""
        cfg = self.config
        if not self.training:
            return wave, None
        b, t = wave.shape
        dev = wave.device
        spectral = None
        draws = self.draw(b, dev)
        if draws is not None:
            chosen, rates, semis = draws
            if cfg.pitch_time_mode == "spectral":
                spectral = PitchTime(
                    torch.zeros(b, device=dev, dtype=torch.float64).index_copy(0, chosen, semis),
                    torch.ones(b, device=dev, dtype=torch.float64).index_copy(0, chosen, rates),
                )
            else:
                wave = wave.clone()
                wave[chosen] = pitch_time(wave[chosen], rates, semis, cfg.stretch_n_fft)
        if cfg.gain_db > 0:
            db = (torch.rand(b, 1, device=dev) * 2 - 1) * cfg.gain_db
            wave = wave * torch.pow(10.0, db / 20)
        if cfg.shift > 0:
            wave = torch.gather(wave, 1, _roll_index(b, t, cfg.shift, dev))
        return wave, spectral


def _roll_index(n: int, size: int, fraction: float, device: torch.device) -> torch.Tensor:
    """(n, size) gather index of a circular roll per row, by a random shift of up to ``fraction * size`` either way."""
    shifts = torch.round((torch.rand(n, device=device) * 2 - 1) * fraction * size).long()
    return (torch.arange(size, device=device).unsqueeze(0) - shifts.unsqueeze(1)) % size


def mask_width(width: int | float, size: int) -> int:
    """The mask width in cells of an axis of ``size``: ``width`` itself, or ``round(width * size)`` for a share < 1."""
    cells = round(width * size) if isinstance(width, float) and width < 1 else int(width)
    return min(cells, size)


def _masks(n: int, count: int, width: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, size) bool: True where any of ``count`` random bands of width 0..``width`` covers."""
    pos = torch.arange(size, device=device)
    out = torch.zeros(n, size, dtype=torch.bool, device=device)
    for _ in range(count):
        w = torch.randint(0, width + 1, (n, 1), device=device)
        start = (torch.rand(n, 1, device=device) * (size - w + 1)).long()
        out |= (pos >= start) & (pos < start + w)
    return out


class SpecAugment(_Augment):
    """``spec (B, C, F, T) -> spec``: circular time roll, then frequency and time masks, shared across channels.

    Masked cells are set to the clip's own mean, so the masks do not introduce an out-of-range value.
    Identity in ``eval()`` mode.

    Args:
        config: the augmentation settings.
    """

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not self.training:
            return spec
        b, _, f, t = spec.shape
        if cfg.time_roll > 0:
            idx = _roll_index(b, t, cfg.time_roll, spec.device)  # (B, T)
            spec = torch.gather(spec, 3, idx[:, None, None, :].expand_as(spec))
        mask = torch.zeros(b, 1, f, t, dtype=torch.bool, device=spec.device)
        freq_width, time_width = mask_width(cfg.freq_mask_width, f), mask_width(cfg.time_mask_width, t)
        if cfg.freq_masks and freq_width:
            mask |= _masks(b, cfg.freq_masks, freq_width, f, spec.device)[:, None, :, None]
        if cfg.time_masks and time_width:
            mask |= _masks(b, cfg.time_masks, time_width, t, spec.device)[:, None, None, :]
        if not (cfg.freq_masks and freq_width) and not (cfg.time_masks and time_width):
            return spec
        fill = spec.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(mask, fill, spec)
