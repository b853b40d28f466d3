"""Local, offline pretrained weights: reading weight files and loading them into a backbone.

Supported files: ``.safetensors``, ``.pth``/``.pt``/``.bin`` state dicts (read with ``weights_only=True``)
and Lightning ``.ckpt`` files of an :class:`~audiocls.model.AudioClassifier` (the ``backbone.`` prefix is
stripped). The classifier head and a first convolution of another channel count are adapted by timm's own
rules, the same as for hub weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from audiocls.errors import ConfigError

__all__ = ["read_state_dict"]

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, with Lightning and ``module.`` prefixes removed.

    Raises:
        ConfigError: the file is missing or not a weights file; the message names it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights={path}: no such file; pass the path of a .safetensors, .pth or .ckpt file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"model.weights={path} is not a readable weights file: {err}") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights={path} does not hold a state dict of tensors")
    for prefix in ("backbone.", "module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state
