"""Partial transfer (the paper's study): backbone stages by timm's feature_info, freeze up to a stage, re-initialise from one."""

from __future__ import annotations

import logging

from torch import nn

from audiocls.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["num_stages", "stage_of_modules", "freeze_until", "reinit_from"]


# --- partial transfer ------------------------------------------------------------------------------------
def num_stages(model: nn.Module) -> int:
    """How many stages ``model`` reports in timm's ``feature_info`` (0 when it has none)."""
    return len(_stage_modules(model))


def _stage_modules(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    entries = info if isinstance(info, list) else info.info
    return [e["module"] for e in entries]


def stage_of_modules(model: nn.Module) -> dict[str, int]:
    """The stage of every module that holds parameters or buffers directly, by forward (registration) order.

    Stage ``k`` (1-based) is everything after the end of stage ``k-1`` up to the end of ``feature_info[k-1]``'s
    module, so the stem belongs to stage 1; what follows the last stage (e.g. a head convolution and the
    classifier) is stage ``S + 1``.

    Raises:
        ConfigError: the model has no ``feature_info``.
    """
    stages = _stage_modules(model)
    if not stages:
        raise ConfigError(f"{type(model).__name__} has no feature_info stages; partial transfer needs a timm model")
    names = [n for n, _ in model.named_modules()]
    ends = []
    for stage in stages:
        inside = [i for i, n in enumerate(names) if n == stage or n.startswith(f"{stage}.")]
        ends.append(max(inside))
    out = {}
    for i, (name, module) in enumerate(model.named_modules()):
        if not any(True for _ in module.parameters(recurse=False)) and not any(True for _ in module.buffers(False)):
            continue
        out[name] = next((k + 1 for k, end in enumerate(ends) if i <= end), len(stages) + 1)
    return out


def _check_stage(model: nn.Module, stage: int, option: str, low: int, high_extra: int) -> int:
    count = num_stages(model)
    if not count:
        raise ConfigError(f"{type(model).__name__} has no feature_info stages; model.{option} needs a timm model")
    if not low <= stage <= count + high_extra:
        raise ConfigError(
            f"model.{option}={stage} is out of range: {type(model).__name__} has {count} stages, "
            f"choose {low}..{count + high_extra}"
        )
    return count


def freeze_until(model: nn.Module, stage: int) -> list[nn.Module]:
    """Freeze stages ``1..stage`` (stem included): no gradients, and BatchNorm kept in eval mode.

    Args:
        model: a timm model with ``feature_info``.
        stage: 0 freezes nothing; ``S`` (the number of stages) freezes every feature stage, leaving what
            follows (head convolution, classifier) trainable.

    Returns:
        The frozen normalisation modules, which the caller keeps in eval mode after every ``train()``.
    """
    _check_stage(model, stage, "freeze_until", 0, 0)
    frozen_norms = []
    for name, k in stage_of_modules(model).items():
        if k > stage:
            continue
        module = model.get_submodule(name)
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.eval()
            frozen_norms.append(module)
    return frozen_norms


def reinit_from(model: nn.Module, fresh: nn.Module, stage: int) -> int:
    """Replace stages ``stage..S+1`` of ``model`` by those of ``fresh`` (a randomly initialised twin).

    Parameters and buffers (BatchNorm statistics too) are copied, so the re-initialised part is exactly what
    timm's own random initialisation gives. ``stage=1`` re-initialises everything; ``S + 1`` only the head.

    Returns:
        The number of tensors replaced.
    """
    _check_stage(model, stage, "reinit_from", 1, 1)
    own, new = model.state_dict(), fresh.state_dict()
    regions = stage_of_modules(model)
    replaced = 0
    for key in own:
        module = key.rsplit(".", 1)[0] if "." in key else ""
        if regions.get(module, 0) >= stage:
            own[key].copy_(new[key])
            replaced += 1
    return replaced
