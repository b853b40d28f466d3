"""Frontend + backbone as one plain module, ``wave (B, T) -> logits (B, num_classes)``: traceable and exportable."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audiocls.models.classifier import AudioClassifier

import logging

import torch
from torch import nn

from audiocls.models.backbone import channel_affine

log = logging.getLogger(__name__)

__all__ = ["WaveClassifier"]


class WaveClassifier(nn.Module):
    """Frontend + backbone as one plain module (traceable, exportable): ``wave (B, T) -> logits (B, num_classes)``.

    Args:
        frontend: waveform -> spectrogram module, ``(B, T) -> (B, C, n_mels, frames)``.
        model: the trained classifier; its backbone and input transform (``input_scale``/``input_shift``, set
            for torchvision-style backbones) are taken, the Lightning parts are left out.
    """

    def __init__(self, frontend: nn.Module, model: AudioClassifier):
        super().__init__()
        self.frontend, self.backbone = frontend, model.backbone
        scale, shift = getattr(model, "input_scale", None), getattr(model, "input_shift", None)
        if scale is not None:
            self.register_buffer("input_scale", scale.detach().clone())
            self.register_buffer("input_shift", shift.detach().clone())
        else:
            self.input_scale = self.input_shift = None

    def backbone_input(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, n_mels, frames) as the backbone sees it (after AudioClassifier's input transform)."""
        return channel_affine(spec, self.input_scale, self.input_shift)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) -> logits (B, num_classes)."""
        return self.backbone(self.backbone_input(self.frontend(wave)))
