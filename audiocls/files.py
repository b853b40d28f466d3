"""Crash-safe files: written to a temporary file, fsynced, then renamed; the one place that reads torch files.

A process killed at any moment (SIGKILL, OOM, a preempted node) leaves either the previous complete file or
the new complete file at the target path, never a truncated one that a later run would trust; folders are
built the same way (:func:`atomic_folder`). Files written by torch are read back by :func:`load_torch_file`
only, with ``weights_only=True``: loading a file cannot run code. :func:`hash_files` is the fingerprint of a
file list that the caches are keyed by.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audiocls.errors import ConfigError

log = logging.getLogger(__name__)


def writable_dir(path: str | Path, what: str, fix: str) -> Path:
    """Create the folder ``path`` if needed and prove it writable (a temporary file), before any work for it.

    Args:
        path: the folder.
        what: what it holds, for the message (``output folder``, ``the weights folder``).
        fix: the way out, for the message (the setting or environment variable that chose it).

    Raises:
        ConfigError: one line naming the folder, why (a read-only disk, a path through a file, ...) and ``fix``.
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".audiocls-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {path} is not writable ({err.strerror or err}); {fix}") from err
    return path


#: write errors that a folder's place causes (full, over quota, read-only, no permission)
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def format_bytes(n: float) -> str:
    """``n`` bytes for a person: ``512 B``, ``3.4 MB``, ``12.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # unreachable; for the type checker


def check_free_space(folder: str | Path, need_bytes: int, what: str, fix: str, *, purpose: str = "") -> None:
    """Refuse, before a large write, when the disk of ``folder`` has less than ``need_bytes`` free.

    Args:
        folder: the folder about to be written.
        need_bytes: the bytes the write needs.
        what: what the folder holds, for the message.
        fix: the setting that moves it, for the message (``, or free space`` is added).
        purpose: what the bytes are for, for the message (``12 files decoded at 8000 Hz``).

    Raises:
        ConfigError: one line naming the folder, the bytes needed and free, and ``fix``.
    """
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        why = f" for {purpose}" if purpose else ""
        raise ConfigError(
            f"{what} {folder} has {format_bytes(free)} free, {format_bytes(need_bytes)} needed{why}; {fix}, "
            "or free space"
        )


def disk_write_error(err: OSError, path: str | Path, what: str, fix: str) -> ConfigError | None:
    """The one-line error for ``err`` raised while writing ``path`` (a full disk, a read-only one, ...); ``None``
    for an error that the folder's place does not explain (re-raise that one)."""
    if err.errno not in DISK_ERRNOS:
        return None
    why = "no space left" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "a refused write"
    return ConfigError(
        f"{what} {path} could not be written: {why} ({err.strerror or err}; the partial file was removed); {fix}"
    )


__all__ = [
    "DISK_ERRNOS",
    "check_free_space",
    "disk_write_error",
    "format_bytes",
    "writable_dir",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "hash_files",
    "is_local_path",
    "load_torch_file",
    "partial_path",
]


def is_local_path(path: str | Path) -> bool:
    """True for a plain file system path, False for an fsspec URL such as ``s3://bucket/x.ckpt``."""
    return "://" not in str(path) or str(path).startswith("file://")


def partial_path(path: str | Path) -> Path:
    """The temporary file beside ``path`` that an atomic write fills before the rename: ``.<stem>.partial<suffix>``."""
    path = Path(str(path).removeprefix("file://"))
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_output_file(path: str | Path, *, setting: str = "--out") -> Path:
    """Prove that a file can be written at ``path`` before any work starts; returns ``path`` as given.

    Its folder must exist or be creatable (it is created) and be writable; ``path`` must not be a folder.

    Raises:
        ConfigError: one line naming the path and the fix.
    """
    path = Path(str(path).removeprefix("file://")).expanduser()
    fix = f"pass a file in a writable folder with {setting}=<file>"
    if path.is_dir():
        raise ConfigError(f"{setting}={path} is a folder; {fix} (for example {path / 'out'})")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{setting}={path}: {blocking} is a file, not a folder; {fix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{setting}={path} cannot be written ({err.strerror or err}); {fix}") from err
    return path


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
    tmp = partial_path(path)
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


@contextmanager
def atomic_folder(target: str | Path, complete: Callable[[], bool]) -> Iterator[Path]:
    """Build a folder in a temporary folder beside ``target`` (yielded), then rename it to ``target``.

    A killed build never leaves a folder at ``target`` that looks complete. On an :class:`OSError` (the rename
    included) the temporary folder is removed and the error is raised unless ``complete()`` says another
    process finished ``target`` first (theirs is kept); on any other error it is removed and the error raised.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        yield tmp
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not complete():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hash_files(h, paths: Sequence[str | Path], extras: Sequence[str] | None = None) -> None:
    """Feed ``h`` (a :mod:`hashlib` object) one line per file: resolved path, size, modification time (and
    ``extras[i]``, when given); ``<path>:missing`` for a file that cannot be read. Any change to a file (or a
    file replaced) changes the digest."""
    for i, path in enumerate(paths):
        path = Path(path)
        try:
            st = path.stat()
        except OSError:
            h.update(os.fsencode(path) + b":missing\n")
            continue
        tail = f":{extras[i]}" if extras is not None else ""
        # os.fsencode: the path's bytes as the file system gives them (a name that is not valid UTF-8 included)
        h.update(os.fsencode(path.resolve()) + f":{st.st_size}:{st.st_mtime_ns}{tail}\n".encode())


def _why_unreadable(err: Exception) -> str:
    """One line on why torch could not read a file, without torch's advice to load it unsafely."""
    text = str(err)
    if "Weights only load failed" in text:
        return "it holds Python objects that a safe load (weights only) refuses to run"
    first = text.splitlines()[0].strip() if text.strip() else ""
    return f"{type(err).__name__}: {first}" if first and "weights_only" not in first else type(err).__name__


def load_torch_file(
    path: str | Path,
    *,
    setting: str = "ckpt_path",
    what: str = "checkpoint",
    hint: str = "pass the .ckpt written by 'audiocls fit'",
    map_location: Any = "cpu",
    mmap: bool = False,
) -> Any:
    """The object in a file written by ``torch.save``, read with ``weights_only=True`` (loading runs no code).

    The package's only ``torch.load``: checkpoints (:mod:`audiocls.training.checkpoints`) and weight files
    (:mod:`audiocls.models.weights`) are read here.

    Args:
        path: the file (a ``file://`` prefix is allowed).
        setting: the setting that named the file, for the error (``ckpt_path``, ``model.weights``).
        what: what the file should be, for the error.
        hint: how to fix it, for the error.
        map_location: passed to ``torch.load``.
        mmap: map the file instead of reading it (for a quick look at a large checkpoint).

    Raises:
        ConfigError: one line naming the file: it does not exist, or cannot be read (truncated, not a torch
            file, or holding objects a safe load refuses).
    """
    import torch

    path = Path(str(path).removeprefix("file://")).expanduser()
    if not path.is_file():
        raise ConfigError(f"{setting}={path} does not exist; {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        raise ConfigError(
            f"{setting}={path}: cannot read {what} ({_why_unreadable(err)}); it may be truncated or not written by "
            f"torch; {hint}"
        ) from err
