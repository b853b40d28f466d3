"""The device side of a batch: waveforms in, spectrograms out, after the transfer to the model's device.

The datamodule's ``on_after_batch_transfer`` calls :func:`to_spectrograms` (the model leaves that hook alone): the
waveform augmentation (training only), the frontend, the spectrogram augmentation (training only). Loaders that
hold stored raw spectrograms (``data.precompute_frontend``) get only the frontend's normalisation tail.
"""

from __future__ import annotations

import torch

from audiocls.audio.augment import SpecAugment, WaveAugment
from audiocls.audio.frontend import LogMelFrontend

__all__ = ["to_spectrograms"]


def to_spectrograms(
    wave: torch.Tensor,
    frontend: LogMelFrontend,
    wave_augment: WaveAugment,
    spec_augment: SpecAugment,
    *,
    training: bool,
    precomputed: bool = False,
) -> torch.Tensor:
    """wave (B, T) -> spec (B, C, n_mels, frames); windowed evaluation batches wave (B, W, T) -> spec
    (B, W, C, n_mels, frames), whose logits the model averages over W. ``precomputed``: ``wave`` is already the raw
    spec (B, C, n_mels, frames) (or (B, W, ...)) of the stored images."""
    frontend.to(wave.device)
    if precomputed:  # the loaders hold raw spectrograms: only the normalisation tail is left
        spec = frontend.normalise(wave)
        return spec_augment(spec) if training else spec
    pitch_time = None  # augment.pitch_time_mode=spectral: the frontend shifts/stretches the spectrogram
    if training:
        wave, pitch_time = wave_augment.with_pitch_time(wave)
    if wave.ndim == 3:
        b, w, t = wave.shape
        spec = frontend(wave.reshape(b * w, t))  # (B*W, C, F, frames)
        spec = spec.reshape(b, w, *spec.shape[1:])
    else:
        spec = frontend(wave, pitch_time)
    return spec_augment(spec) if training else spec
