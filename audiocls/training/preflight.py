"""Checks that fail a run before its first step, with one message naming the value and the fix.

Some checks live where the value is read and are not repeated here: the frontend's (``f_max`` above the
Nyquist frequency, clips shorter than the longest window: :func:`audiocls.audio.frontend.check_frontend`), the
dataset's metadata (:func:`audiocls.data.esc50.read_esc50_meta`), the batch size against the training set
(``AudioDataModule.setup``), unreadable audio (``load_audio``, while the decoded cache is built in
``prepare_data``) and unknown backbones (:func:`audiocls.models.backbone.build_backbone`). This module adds what needs the
whole run in view: the output folder, the data root, and a checkpoint against the configured model and data.
``AudioCLI`` calls them before fit/validate/test/predict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from audiocls.errors import DataError
from audiocls.files import check_free_space, format_bytes, writable_dir

__all__ = ["check_output_dir", "estimate_checkpoint_bytes", "check_data_root"]

log = logging.getLogger(__name__)

#: space kept free beyond the checkpoints, for logs and temporary files
MARGIN_BYTES = 64 * 2**20


def check_output_dir(path: str | Path, *, need_bytes: int = 0, setting: str = "trainer.logger.save_dir") -> Path:
    """Create ``path`` if needed and prove it writable with ``need_bytes`` + a margin free.

    Args:
        path: the folder a run writes logs and checkpoints to.
        need_bytes: the bytes the run will write (see :func:`estimate_checkpoint_bytes`).
        setting: the setting that chose ``path``, named in the error.

    Raises:
        ConfigError: the folder cannot be created, is not writable, or its disk has too little free space.
    """
    fix = f"pass a writable folder with --{setting}=<dir>"
    path = writable_dir(path, "output folder", fix)
    purpose = f"the checkpoints of this model + {format_bytes(MARGIN_BYTES)} for logs"
    check_free_space(path, need_bytes + MARGIN_BYTES, "output folder", fix, purpose=purpose)
    return path


def estimate_checkpoint_bytes(model: torch.nn.Module, *, optimizer_states: int = 2, copies: int = 2) -> int:
    """Bytes of the checkpoints a fit keeps: weights + optimizer moments (Adam: 2), times ``copies`` files."""
    tensors = [*model.parameters(), *model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return copies * (weights + optimizer_states * params)


def check_data_root(datamodule: Any) -> None:
    """A dataset whose ``root`` is set must find it as a folder (``DataError`` naming it otherwise).

    A relative ``root`` is resolved against the working folder; one INFO line names the absolute folder used.
    """
    root = getattr(datamodule, "root", None)
    if root is not None and not Path(root).is_absolute():  # say which folder a relative root means here
        log.info("data.root=%s is relative to the working folder: reading %s", root, Path(root).resolve())
    if root is not None and not Path(root).is_dir():
        what = "is a file, not a folder" if Path(root).exists() else "does not exist"
        raise DataError(
            f"data.root={root} {what}; pass the folder of the dataset "
            f"({type(datamodule).__name__}), or download it with 'audiocls data download'"
        )
