"""Checks that fail a run before its first step, with one message naming the value and the fix.

Some checks live where the value is read and are not repeated here: the frontend's (``f_max`` above the
Nyquist frequency, clips shorter than the longest window: :func:`audiocls.features.check_frontend`), the
dataset's metadata (:func:`audiocls.data.esc50.read_esc50_meta`), the batch size against the training set
(``AudioDataModule.setup``), unreadable audio (``load_audio``, while the decoded cache is built in
``prepare_data``) and unknown backbones (:func:`audiocls.model.build_backbone`). This module adds what needs the
whole run in view: the output folder, the data root, and a checkpoint against the configured model and data.
``AudioCLI`` calls them before fit/validate/test/predict.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from audiocls.checkpoint_io import checkpoint_error
from audiocls.errors import ConfigError, DataError

__all__ = [
    "check_output_dir",
    "estimate_checkpoint_bytes",
    "check_data_root",
    "find_last_checkpoint",
    "check_checkpoint",
    "state_dict_mismatch",
]

log = logging.getLogger(__name__)

#: hyperparameters that must match between a checkpoint and the run that loads it
MODEL_KEYS = ("backbone", "num_classes", "in_chans", "class_names")
DATA_KEYS = ("sample_rate", "clip_seconds", "frontend")
#: space kept free beyond the checkpoints, for logs and temporary files
MARGIN_BYTES = 64 * 2**20
SHOW = 5


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def check_output_dir(path: str | Path, *, need_bytes: int = 0, setting: str = "trainer.logger.save_dir") -> Path:
    """Create ``path`` if needed and prove it writable with ``need_bytes`` + a margin free.

    Args:
        path: the folder a run writes logs and checkpoints to.
        need_bytes: the bytes the run will write (see :func:`estimate_checkpoint_bytes`).
        setting: the setting that chose ``path``, named in the error.

    Raises:
        ConfigError: the folder cannot be created, is not writable, or its disk has too little free space.
    """
    path = Path(path).expanduser()
    fix = f"pass a writable folder with --{setting}=<dir>"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".audiocls-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"output folder {path} is not writable ({err.strerror or err}); {fix}") from err
    free = shutil.disk_usage(path).free
    if free < need_bytes + MARGIN_BYTES:
        raise ConfigError(
            f"output folder {path} has {_mb(free)} free, the run needs about {_mb(need_bytes + MARGIN_BYTES)} "
            f"(checkpoints of this model + {_mb(MARGIN_BYTES)} for logs); free space or {fix}"
        )
    return path


def estimate_checkpoint_bytes(model: torch.nn.Module, *, optimizer_states: int = 2, copies: int = 2) -> int:
    """Bytes of the checkpoints a fit keeps: weights + optimizer moments (Adam: 2), times ``copies`` files."""
    tensors = [*model.parameters(), *model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return copies * (weights + optimizer_states * params)


def check_data_root(datamodule: Any) -> None:
    """A dataset whose ``root`` is set must find it as a folder (``DataError`` naming it otherwise)."""
    root = getattr(datamodule, "root", None)
    if root is not None and not Path(root).is_dir():
        what = "is a file, not a folder" if Path(root).exists() else "does not exist"
        raise DataError(
            f"data.root={root} {what}; pass the folder of the dataset "
            f"({type(datamodule).__name__}), or download it with 'audiocls data download'"
        )


def find_last_checkpoint(root_dir: str | Path, name: str = "last.ckpt") -> Path | None:
    """The most recently written ``<root_dir>/version_*/checkpoints/<name>`` (``None`` when there is none)."""
    found = [p for p in Path(root_dir).glob(f"*/checkpoints/{name}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns).absolute() if found else None


def _plain(value: Any) -> Any:
    """Tuples as lists, dataclasses as dicts: the form in which hyperparameters compare equal."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "__dict__", str(v))))


def state_dict_mismatch(
    expected: Mapping[str, Any], found: Mapping[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, ``key (found shape) vs (expected shape)``) of two state dicts."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    shapes = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def _summary(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (file vs model): {_names(shapes)}")
    return "; ".join(parts)


def check_checkpoint(ckpt_path: str | Path, model: torch.nn.Module, datamodule: Any = None) -> None:
    """Refuse a checkpoint written by an incompatible config, before any data is decoded.

    Compares the checkpoint's model hyperparameters (:data:`MODEL_KEYS`: backbone, num_classes, in_chans,
    class_names), its datamodule hyperparameters (:data:`DATA_KEYS`: sample_rate, clip_seconds, frontend) and
    its weights' names and shapes with the configured ``model`` and ``datamodule``.

    Raises:
        ConfigError: the file is missing or unreadable, or differs in any of the above; the message names the
            differing settings (checkpoint value vs config value) or tensors, and the fix.
    """
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise checkpoint_error(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise checkpoint_error(path, err) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path={path} holds no 'state_dict': it is not a Lightning checkpoint")
    fix = (
        "use the config the checkpoint was trained with (its run folder holds config.yaml: --config <run>/config.yaml), "
        "or start a new run without --ckpt_path"
    )
    diffs = []
    sources = [("model", ckpt.get("hyper_parameters"), getattr(model, "hparams", {}), MODEL_KEYS)]
    if datamodule is not None:
        sources.append(("data", ckpt.get("datamodule_hyper_parameters"), getattr(datamodule, "hparams", {}), DATA_KEYS))
    for group, saved, current, keys in sources:
        if not isinstance(saved, Mapping):
            continue
        for key in keys:
            if key in saved and key in current and _plain(saved[key]) != _plain(current[key]):
                diffs.append(f"{group}.{key}: checkpoint {_plain(saved[key])!r} vs config {_plain(current[key])!r}")
    if diffs:
        raise ConfigError(f"ckpt_path={path} was written by an incompatible config: {'; '.join(diffs)}; {fix}")
    mismatch = state_dict_mismatch(model.state_dict(), ckpt["state_dict"])
    if any(mismatch):
        raise ConfigError(f"ckpt_path={path} does not fit the configured model: {_summary(*mismatch)}; {fix}")
