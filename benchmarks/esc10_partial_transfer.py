"""The paper's partial-transfer study on ESC-10 fold 1 with the shipped recipe (configs/esc10.yaml), 3 seeds each.

Every run is ``audiocls fit --config configs/esc10.yaml --data.fold 1 --seed_everything SEED`` plus one of
``--model.freeze_until K`` (stages 1..K keep their ImageNet weights and do not train; BatchNorm stays in eval mode)
or ``--model.reinit_from K`` (stages K.. start from random init). Stages are timm's ``feature_info`` stages of
regnetx_002: 1 = stem, 2-5 = s1-s4; ``freeze_until 0`` is plain fine-tuning, ``reinit_from 1`` is random init.
``reinit_from 6`` (only the head) is the same model as plain fine-tuning (the classifier always starts fresh), so
it is not run. Runs go seed by seed, so a study cut short still has every stage for the first seeds; finished
runs (``metrics.json`` present) are skipped, so it resumes. All runs share one Python process (imports once).

    flock /tmp/audiocls-cpu.lock .venv/bin/python benchmarks/esc10_partial_transfer.py \\
        > runs/esc10_transfer.log 2>&1 &
    .venv/bin/python benchmarks/results.py          # the table and the plot in docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import subprocess
import time
from pathlib import Path

import torch

from audiocls.cli import main as audiocls_main

ROOT = Path(__file__).resolve().parents[1]
STAGES = 5  # regnetx_002: stem, s1, s2, s3, s4
PLAN = ["freeze_until=0", "reinit_from=1"] + [f"freeze_until={k}" for k in range(1, STAGES + 1)]
PLAN += [f"reinit_from={k}" for k in range(2, STAGES + 1)]


def run_name(item: str, seed: int) -> str:
    option, stage = item.split("=")
    return f"{option}{stage}-seed{seed}"


def fit_args(item: str, seed: int, fold: int, out: Path) -> list[str]:
    """The ``audiocls fit`` arguments of one run (no checkpoint files: the final epoch is tested in place)."""
    option, stage = item.split("=")
    return [
        "fit",
        "--config=configs/esc10.yaml",
        f"--data.fold={fold}",
        f"--seed_everything={seed}",
        f"--model.{option}={stage}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--trainer.logger.init_args.name={run_name(item, seed)}",
        "--trainer.logger.init_args.version=run",
        "--checkpoint.save_top_k=0",
        "--checkpoint.save_last=false",
    ]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--plan", nargs="+", default=PLAN, help="OPTION=STAGE items, in order")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results" / "esc10_transfer")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for item in args.plan:
            run = args.out / run_name(item, seed) / "run"
            if (run / "metrics.json").is_file():
                continue
            argv = fit_args(item, seed, args.fold, args.out)
            record = {"command": "audiocls " + " ".join(argv[:5]), "item": item, "seed": seed, "fold": args.fold}
            record.update(started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), uptime_before=_uptime())
            print(f"{time.strftime('%H:%M:%S')} start: audiocls {' '.join(argv)}", flush=True)
            start = time.monotonic()
            code = audiocls_main(argv)
            record.update(wall_s=round(time.monotonic() - start, 1), uptime_after=_uptime(), returncode=code)
            (args.out / f"{run_name(item, seed)}.run.json").write_text(json.dumps(record, indent=2))
            print(f"RESULT {run_name(item, seed)} {record['wall_s']:.0f} s code={code}", flush=True)


if __name__ == "__main__":
    main()
