"""The paper's partial-transfer study on one ESC-10 fold: freeze the pretrained network up to stage k, or
re-initialise it from stage k on; same config and epochs as benchmarks/esc10_pretrained_vs_random.py.

Stages are timm's ``feature_info`` stages (tf_mobilenetv3_small_100 has 5; stage S + 1 is the head).

    nice -n 10 .venv/bin/python benchmarks/esc10_partial_transfer.py --model mnv3 --fold 1 --epochs 3 \\
        > runs/esc10_transfer.log 2>&1 &
    .venv/bin/python benchmarks/esc10_partial_transfer.py --summary runs/esc10_transfer
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from audiocls.cli import main as audiocls_main

sys.path.insert(0, str(Path(__file__).parent))
from esc10_pretrained_vs_random import fit_args  # noqa: E402


def summary(root: Path) -> None:
    """Print a Markdown table of the runs under ``root``."""
    print("| run | test acc (final epoch) | wall s |")
    print("| --- | --- | --- |")
    for path in sorted(root.glob("*/version_0/metrics.json")):
        run = path.parent.parent.name
        wall = (path.parent / "wall_s.txt").read_text().strip() if (path.parent / "wall_s.txt").is_file() else "?"
        print(f"| {run} | {100 * json.loads(path.read_text())['test/acc']:.1f} | {wall} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnv3")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n_mels", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 128))
    parser.add_argument(
        "--plan",
        nargs="+",
        default=[
            "freeze_until=0",
            "reinit_from=1",
            "freeze_until=5",
            "reinit_from=5",
            "freeze_until=3",
            "reinit_from=3",
            "freeze_until=1",
            "reinit_from=2",
            "freeze_until=4",
            "reinit_from=4",
        ],
        help="runs in order, each OPTION=STAGE; freeze_until=0 is plain fine-tuning, reinit_from=1 random init",
    )
    parser.add_argument("--out", default="esc10_transfer")
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    torch.set_flush_denormal(True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for item in args.plan:
        option, stage = item.split("=")
        name = f"{args.model}-{option}{stage}-fold{args.fold}"
        run = Path("runs", args.out, name, "version_0")
        if (run / "metrics.json").is_file():
            continue
        argv = fit_args(args.model, "pretrained", args.fold, args)
        argv = [a.replace(f"{args.model}-pretrained-fold{args.fold}", name) for a in argv]
        argv += [f"--model.{option}={stage}"]
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} start: audiocls {' '.join(argv)}", flush=True)
        start = time.time()
        code = audiocls_main(argv)
        wall = time.time() - start
        if code == 0:
            (run / "wall_s.txt").write_text(f"{wall:.0f}\n")
        print(f"RESULT {name} {wall:.0f} s code={code}", flush=True)


if __name__ == "__main__":
    main()
