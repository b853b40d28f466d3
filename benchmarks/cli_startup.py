"""Seconds from typing ``audiocls --help`` to its answer, beside ``audiocls fit --help`` (which loads Lightning).

    .venv/bin/python benchmarks/cli_startup.py --repeats 3

Each command runs ``--repeats`` times in a fresh ``python -m audiocls`` process; the script prints the median
wall-clock seconds and the median CPU seconds of the child (user + system). On a machine shared with other jobs
the CPU figure is the stable one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(args: list[str], repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s) of ``python -m audiocls ARGS`` over ``repeats`` fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, t0 = _child_cpu(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "audiocls", *args], env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_child_cpu() - cpu0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    for args in (["--help"], ["fit", "--help"]):
        wall, cpu = time_command(args, opts.repeats)
        print(f"audiocls {' '.join(args):<11} wall {wall:6.2f} s  cpu {cpu:6.2f} s  (median of {opts.repeats})")


if __name__ == "__main__":
    main()
