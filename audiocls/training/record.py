"""What makes a run reproducible: its record (``runinfo.json``) and its random state across a resume.

``runinfo.json`` is written beside ``config.yaml`` and ``metrics.json`` in every run's folder: the seed, the
versions of Python, torch, torchaudio, timm, lightning and audiocls, the git commit of the audiocls source (and
whether it had uncommitted changes), the device, the command line and, for a resumed run, the checkpoint it
resumed from. A resume that reuses the folder keeps the earlier records under ``earlier``.

:class:`RandomStateCallback` stores the Python, NumPy and torch random states of every process in every checkpoint
and puts each back when a run resumes, so the resumed epochs draw the same shuffles, crops, augmentations and
dropout masks as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from audiocls.files import atomic_write_text

__all__ = [
    "collect_runinfo",
    "discard_failed_run_dir",
    "git_commit",
    "package_versions",
    "write_runinfo",
    "RunInfoCallback",
    "RandomStateCallback",
]

log = logging.getLogger(__name__)

RUNINFO_FILE = "runinfo.json"
PACKAGES = ("torch", "torchaudio", "timm", "lightning", "torchmetrics", "numpy", "soundfile", "audiocls")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Version of each package: the imported module's ``__version__``, else the installed distribution's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        loaded = getattr(sys.modules.get(name), "__version__", None)  # torch's carries the build: 2.x+cu130
        try:
            out[name] = str(loaded) if loaded else metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(folder: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``folder`` (default: the audiocls source).

    ``None`` when it is not a git checkout or git is not installed (e.g. audiocls installed from a wheel).
    """
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())}


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (a wall time means little without them); None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def collect_runinfo(seed: int | None, **extra: Any) -> dict[str, Any]:
    """The record of one run: seed, versions, git commit, device, command line, time and load average, plus
    ``extra``."""
    info: dict[str, Any] = {
        "seed": seed,
        "versions": package_versions(),
        "git": git_commit(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    info.update(extra)
    return info


#: what a run folder holds before the first step (the config, the hyperparameters, the record): once that run has
#: failed, nothing a user needs
SCAFFOLD_FILES = ("config.yaml", "hparams.yaml", RUNINFO_FILE)


def discard_failed_run_dir(run_dir: str | Path) -> bool:
    """Remove the folder of a failed run when it holds only :data:`SCAFFOLD_FILES`, a header-only ``metrics.csv``
    and empty folders; keep it when it holds anything else (a checkpoint, logged metrics, a link, a user's file).

    Call it only for a folder the failed run created. Returns whether the folder was removed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or run_dir.is_symlink():
        return False
    for path in run_dir.rglob("*"):
        if path.is_symlink():
            return False
        if path.is_dir():
            continue
        if path.parent != run_dir:
            return False
        if path.name == "metrics.csv":
            try:
                if len(path.read_text().splitlines()) > 1:
                    return False
            except (OSError, UnicodeDecodeError):
                return False
        elif path.name not in SCAFFOLD_FILES:
            return False
    shutil.rmtree(run_dir)
    return True


def write_runinfo(run_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write ``info`` to ``run_dir/runinfo.json`` atomically; an earlier record there moves under ``earlier``."""
    path = Path(run_dir) / RUNINFO_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            earlier = old.pop("earlier", [])
            info = {**info, "earlier": [*earlier, old]}
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", path)
    atomic_write_text(path, json.dumps(info, indent=2, default=str))
    return path


class RunInfoCallback(L.Callback):
    """Writes ``runinfo.json`` into the trainer's log folder when fit/validate/test/predict starts (rank 0), once per
    run: the test that ends a fit (``test_after_fit``) keeps the fit's record.

    Args:
        seed: the seed the run was started with.
        subcommand: ``fit``, ``test``, ...
        ckpt_path: the checkpoint the run starts from (a resume, or the weights tested), if any.
        deterministic: the trainer's ``deterministic`` setting (``None`` when not given).
    """

    def __init__(
        self,
        seed: int | None,
        subcommand: str | None = None,
        ckpt_path: str | None = None,
        deterministic: bool | str | None = None,
    ):
        self.seed, self.subcommand, self.ckpt_path = seed, subcommand, ckpt_path
        self.deterministic = deterministic
        self.path: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        from audiocls.training.run_folder import run_dir as _run_dir

        run_dir = _run_dir(trainer)
        if self.path == Path(run_dir) / RUNINFO_FILE:
            return  # one record per run: a fit's own test stage (test_after_fit) is the same run, not a rerun
        extra = {"subcommand": self.subcommand or stage, "ckpt_path": self.ckpt_path}
        extra["deterministic"] = self.deterministic
        self.path = write_runinfo(run_dir, collect_runinfo(self.seed, **extra))


def _rng_state() -> dict[str, Any]:
    """Every global random state, as tensors and plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    has_gauss, gauss_value = state["numpy_gauss"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state["kind"], keys, np_state["pos"], has_gauss, gauss_value))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_per_rank(rank: int, world_size: int) -> None:
    """Re-seed torch (CPU and CUDA) with ``initial seed + rank`` when several processes train.

    ``seed_everything`` gives every process the same seed, so without this every rank would draw the same
    augmentation (masks, rolls, pitch/time, mixup) on its own clips. The model is built before this (DDP copies
    rank 0's weights to every rank anyway), the samplers shuffle with their own shared seed and Lightning seeds
    loader workers per rank; one process keeps its stream as it is (so single-process runs repeat exactly).
    """
    if world_size > 1:
        torch.manual_seed(torch.initial_seed() + rank)


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every process, in global rank order (a collective call under DDP); ``[obj]`` in one process."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class RandomStateCallback(L.Callback):
    """Saves the global random states in checkpoints, one per process, and puts each back when a checkpoint is
    restored.

    A checkpoint is written at the end of an epoch; an uninterrupted run's next random draw is the next epoch's
    loader iterator (its base seed, then the shuffle). A resumed run restores the checkpoint after building the
    model and the data and before its sanity check, which Lightning runs with the random state isolated, so the
    next draw after the restore is again the training loader's: the resumed epochs draw the same shuffles,
    crops, augmentations and dropout masks as the uninterrupted run.

    Under DDP every process's state is gathered when a checkpoint is written (every rank takes part in writing
    one; rank 0 saves the file) and each rank restores its own. A checkpoint written by another number of
    processes restores the states of the ranks it has; a rank it lacks keeps its own (seeded) state, with a
    warning: that resume does not repeat the uninterrupted run's draws (its data shards differ anyway).
    """

    def __init__(self) -> None:
        self.rank, self.world_size = 0, 1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Before Lightning restores a checkpoint: which process this is; a new fit of several processes gives each
        rank its own torch random stream (see :func:`seed_per_rank`)."""
        self.rank, self.world_size = trainer.global_rank, trainer.world_size
        if stage == "fit" and getattr(trainer, "ckpt_path", None) is None:
            seed_per_rank(self.rank, self.world_size)

    def state_dict(self) -> dict[str, Any]:
        """``rng``: this process's state (rank 0's under DDP); ``rng_per_rank``: every rank's, with several."""
        states = _gather(_rng_state())
        return {"rng": states[0], "rng_per_rank": states} if len(states) > 1 else {"rng": states[0]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("rng_per_rank") or ([state_dict["rng"]] if "rng" in state_dict else [])
        if not states:
            return
        if len(states) != self.world_size and self.rank == 0:
            log.warning(
                "the checkpoint holds the random states of %d process(es), this run has %d: ranks 0..%d restore "
                "theirs, any other rank keeps its own; the resumed run does not repeat an uninterrupted run's "
                "random draws",
                len(states),
                self.world_size,
                min(len(states), self.world_size) - 1,
            )
        if self.rank < len(states):
            _set_rng_state(states[self.rank])
