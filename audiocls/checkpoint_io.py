"""Crash-safe files: checkpoints and result files are written to a temporary file, fsynced, then renamed.

A process killed at any moment (SIGKILL, OOM, a preempted node) leaves either the previous complete file or
the new complete file at the target path, never a truncated one that a later run would trust. Checkpoints are
read back with ``weights_only=True``: a checkpoint file cannot run code when it is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from audiocls.errors import ConfigError

__all__ = [
    "AtomicCheckpointIO",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_error",
    "is_local_path",
    "resolve_last_checkpoint",
]

log = logging.getLogger(__name__)


def is_local_path(path: str | Path) -> bool:
    """True for a plain file system path, False for an fsspec URL such as ``s3://bucket/x.ckpt``."""
    return "://" not in str(path) or str(path).startswith("file://")


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: fsync the folder that holds the renamed file (a no-op where not supported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync it, and rename it over ``path``.

    The temporary file is ``.<name>.partial`` in the same folder (so the rename never crosses file systems); on
    any error it is removed and the previous ``path``, if any, is left untouched.
    """
    path = Path(str(path).removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def checkpoint_error(path: str | Path, err: Exception | None = None) -> ConfigError:
    """The error for a checkpoint file that is missing (``err`` None) or cannot be read (``err``)."""
    if err is None:
        return ConfigError(f"ckpt_path={path}: no such checkpoint file; pass the .ckpt written by 'audiocls fit'")
    first = str(err).splitlines()[0] if str(err) else ""
    return ConfigError(
        f"ckpt_path={path} is not a readable checkpoint ({type(err).__name__}: {first}); it may be truncated "
        "or not written by 'audiocls fit' -- pass another file, e.g. the run's checkpoints/last.ckpt"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, with crash-safe saving and safe loading.

    * save: ``torch.save`` streams into ``.<name>.partial`` beside the target, which is fsynced and renamed over
      the target (``os.replace``), then the folder is fsynced. Lightning's own save buffers the whole checkpoint in
      memory and does not fsync; remote (fsspec URL) paths still take Lightning's path.
    * load: ``weights_only=True`` unless the caller asks otherwise; an unreadable or truncated file raises
      :class:`~audiocls.errors.ConfigError` naming it.

    ``AudioCLI`` installs it on every trainer (unless a CheckpointIO plugin is given with ``--trainer.plugins``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not is_local_path(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        _atomic_write(path, lambda fh: torch.save(checkpoint, fh))
        log.debug("saved checkpoint %s", path)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        weights_only = True if weights_only is None else weights_only
        if is_local_path(path) and not Path(str(path).removeprefix("file://")).is_file():
            raise checkpoint_error(path)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except Exception as err:
            raise checkpoint_error(path, err) from err


def resolve_last_checkpoint(trainer: Any, ckpt_path: str | None, *, resume: bool) -> str | None:
    """Turn ``ckpt_path='last'`` into the ``last.ckpt`` of the newest run of this logger, and continue that run.

    With a versioned logger (the default CSVLogger: ``runs/<name>/version_N``) every ``fit`` opens a new
    ``version_N`` folder, so Lightning's own ``'last'`` would look in the new, empty folder and silently train
    from scratch. Here ``'last'`` means the most recently written ``<save_dir>/<name>/version_*/checkpoints/last.ckpt``;
    with ``resume=True`` (``fit``) the logger is pointed at that run's folder, so logs, checkpoints and results of
    the resumed run land beside the killed run's (its ``metrics.csv`` is kept as ``metrics.before-resume-K.csv``).

    Args:
        trainer: the Trainer, before ``fit``/``test``/... has started.
        ckpt_path: the requested path; anything but ``'last'`` is returned unchanged.
        resume: True for ``fit`` (continue in the same folder), False to only resolve the file.

    Returns:
        The checkpoint file, or ``None`` for a ``fit`` with no earlier checkpoint (training starts from scratch,
        as Lightning does, with a warning naming the folder searched).

    Raises:
        ConfigError: ``test``/``validate``/``predict`` with ``'last'`` and no checkpoint found.
    """
    if ckpt_path != "last":
        return ckpt_path
    callback = getattr(trainer, "checkpoint_callback", None)
    logger = getattr(trainer, "logger", None)
    if callback is None or getattr(callback, "dirpath", None) is not None or logger is None:
        return ckpt_path  # a fixed checkpoint folder: Lightning's own lookup finds last.ckpt there
    from audiocls.preflight import find_last_checkpoint

    root = Path(getattr(logger, "save_dir", None) or trainer.default_root_dir) / str(logger.name)
    found = find_last_checkpoint(root, name=f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")
    if found is None:
        if not resume:
            raise ConfigError(f"ckpt_path=last: no {root}/version_*/checkpoints/last.ckpt; pass the checkpoint's path")
        log.warning("ckpt_path=last: no checkpoint under %s/version_*/checkpoints; training starts from scratch", root)
        return None
    if resume and hasattr(logger, "_version") and getattr(logger, "_experiment", None) is None:
        run_dir = found.parent.parent
        logger._version = run_dir.name
        metrics = run_dir / "metrics.csv"
        if metrics.is_file():
            k = 1
            while (run_dir / f"metrics.before-resume-{k}.csv").exists():
                k += 1
            metrics.rename(run_dir / f"metrics.before-resume-{k}.csv")
        log.info("resuming %s from %s", run_dir, found)
    return str(found)
