"""The paper's partial-transfer study on ESC-10 fold 1 with the shipped recipe (configs/esc10.yaml + configs/recipes/cpu.yaml), 3 seeds each.

Every run is ``audiocls fit --config configs/esc10.yaml --config configs/recipes/cpu.yaml --data.fold 1 --seed_everything
SEED`` plus one of
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
from pathlib import Path

from study import esc10_stack, esc50_root, fit_args, run_fits

ROOT = Path(__file__).resolve().parents[1]
STAGES = 5  # regnetx_002: stem, s1, s2, s3, s4
PLAN = ["freeze_until=0", "reinit_from=1"] + [f"freeze_until={k}" for k in range(1, STAGES + 1)]
PLAN += [f"reinit_from={k}" for k in range(2, STAGES + 1)]


def run_name(item: str, seed: int) -> str:
    option, stage = item.split("=")
    return f"{option}{stage}-seed{seed}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--plan", nargs="+", default=PLAN, help="OPTION=STAGE items, in order")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results" / "esc10_transfer")
    parser.add_argument(
        "--root", type=Path, default=None, help="the ESC-50 release folder (default: $AUDIOCLS_ESC50_ROOT)"
    )
    args = parser.parse_args()
    args.root = esc50_root(args.root)
    jobs = []
    for seed in args.seeds:
        for item in args.plan:
            option, stage = item.split("=")
            extra = [*esc10_stack(args.root), f"--data.fold={args.fold}", f"--model.{option}={stage}"]
            meta = {"item": item, "seed": seed, "fold": args.fold}
            jobs.append((run_name(item, seed), fit_args(run_name(item, seed), args.out, extra, seed), meta))
    raise SystemExit(1 if run_fits(jobs, args.out) else 0)


if __name__ == "__main__":
    main()
