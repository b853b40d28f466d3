"""A study: many ``audiocls fit`` runs in one Python process (imports once), resumable, one record per run.

Used by ``esc10_partial_transfer.py`` and ``esc10_ablations.py``. Each run writes its Lightning folder to
``out/<name>/run`` (``metrics.json`` there marks it finished, so a study cut short resumes) and its record
``out/<name>.run.json``: the command, the seed, the wall time and ``uptime`` before and after.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from audiocls.cli import main as audiocls_main

__all__ = ["esc10_stack", "esc50_root", "fit_args", "run_fits", "uptime"]

#: the environment variable naming the ESC-50 release folder (ESC-10 is its subset); benchmarks/results.py reads it too
ESC50_ROOT = "AUDIOCLS_ESC50_ROOT"


def esc50_root(given: Path | None = None) -> Path:
    """``given``, else ``$AUDIOCLS_ESC50_ROOT``: the folder a user passes as ``--data.root`` for ESC-10."""
    import os

    if given is None and not os.environ.get(ESC50_ROOT):
        raise SystemExit(f"pass --root DIR or set {ESC50_ROOT}: the ESC-50 release folder (audio/, meta/esc50.csv)")
    return Path(given or os.environ[ESC50_ROOT])


def esc10_stack(root: Path) -> list[str]:
    """The shipped ESC-10 CPU recipe as a user stacks it, on the data at ``root``."""
    return ["--config=configs/esc10.yaml", "--config=configs/recipes/cpu.yaml", f"--data.root={root}"]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def fit_args(name: str, out: Path, extra: Iterable[str], seed: int) -> list[str]:
    """``audiocls fit`` on ``extra`` with seed ``seed``, logging to ``out/name/run``; no checkpoint files (the
    final epoch is tested in place)."""
    return [
        "fit",
        *extra,
        f"--seed_everything={seed}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--trainer.logger.init_args.name={name}",
        "--trainer.logger.init_args.version=run",
        "--checkpoint.save_top_k=0",
        "--checkpoint.save_last=false",
    ]


def run_fits(jobs: Iterable[tuple[str, list[str], dict]], out: Path) -> int:
    """Run each ``(name, argv, meta)`` not finished yet; ``meta`` goes into its record. Returns the failures."""
    torch.set_flush_denormal(True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, argv, meta in jobs:
        if (out / name / "run" / "metrics.json").is_file():
            continue
        record = {"command": "audiocls " + " ".join(argv), **meta}
        record.update(started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), uptime_before=uptime())
        print(f"{time.strftime('%H:%M:%S')} start {name}: audiocls {' '.join(argv)}", flush=True)
        start = time.monotonic()
        code = audiocls_main(argv)
        record.update(wall_s=round(time.monotonic() - start, 1), uptime_after=uptime(), returncode=code)
        (out / f"{name}.run.json").write_text(json.dumps(record, indent=2))
        print(f"RESULT {name} {record['wall_s']:.0f} s code={code}", flush=True)
        failures += code != 0
    return failures
