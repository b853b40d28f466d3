"""What the recipe's options do on ESC-10 fold 1: weight averaging, the two pitch/time modes, class imbalance.

Every run is the shipped ``audiocls fit --config configs/esc10.yaml --config configs/recipes/cpu.yaml --data.fold 1
--seed_everything SEED`` plus
one variant's arguments (:data:`VARIANTS`), 2 seeds each (what fits in a session on 2 cores):

- ``recipe``: the shipped recipe as it is (spectrograms precomputed, time roll + masks).
- ``ema``: plus ``configs/callbacks/ema.yaml`` (Lightning's EMAWeightAveraging, decay 0.99): does averaging help?
- ``vocoder`` / ``spectral``: the frontend per batch (``data.precompute_frontend false``) with the paper's pitch
  shift [-2, 2] semitones and time stretch [0.9, 1.2] on half the clips, by the phase vocoder (the reference) or
  in the frontend (``augment.pitch_time_mode spectral``, issue 16's fast path): does the fast path train as well?
- ``imbalanced``, ``imbalanced_sampler``, ``imbalanced_weights``: the training folds with every second class cut
  to a quarter of its clips (8 of 32 per class, 4:1), the test fold untouched, through a CSV manifest
  (``audiocls.data.folder.CSVDataModule``, with ESC-50's folds and src_file groups); then plus
  ``data.sampler balanced`` or ``model.class_weights balanced``: do they raise the minority classes' recall?

Runs go seed by seed and resume (finished runs are skipped); all share one process. ``--variants`` and ``--seeds``
pick a subset; ``benchmarks/results.py`` keeps the committed runs a new folder lacks.

    flock /tmp/audiocls-cpu.lock .venv/bin/python benchmarks/esc10_ablations.py > runs/esc10_ablations.log 2>&1 &
    .venv/bin/python benchmarks/results.py          # the tables in docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from study import esc10_stack, esc50_root, fit_args, run_fits

ROOT = Path(__file__).resolve().parents[1]
NAME = "esc10_ablations"
PITCH_TIME = [
    "--data.init_args.precompute_frontend=false",
    "--data.init_args.augment.pitch_shift=[-2.0,2.0]",
    "--data.init_args.augment.time_stretch=[0.9,1.2]",
    "--data.init_args.augment.pitch_time_p=0.5",
]
CSV_DATA = ["--data=audiocls.data.folder.CSVDataModule", "--data.init_args.manifest={manifest}"]
#: name -> (what it is, extra arguments after ``--config configs/esc10.yaml``, seeds)
VARIANTS: dict[str, tuple[str, list[str], tuple[int, ...]]] = {
    "recipe": ("the shipped recipe", [], (0, 1)),
    "ema": ("+ EMA weight averaging (configs/callbacks/ema.yaml)", ["--config=configs/callbacks/ema.yaml"], (0, 1)),
    "vocoder": (
        "frontend per batch + pitch/time by the phase vocoder",
        [*PITCH_TIME, "--data.init_args.augment.pitch_time_mode=vocoder"],
        (0, 1),
    ),
    "spectral": (
        "frontend per batch + pitch/time in the frontend (spectral)",
        [*PITCH_TIME, "--data.init_args.augment.pitch_time_mode=spectral"],
        (0, 1),
    ),
    "imbalanced": ("every second class at 1/4 of its training clips", CSV_DATA, (0, 1)),
    "imbalanced_sampler": (
        "imbalanced + data.sampler balanced",
        [*CSV_DATA, "--data.init_args.sampler=balanced"],
        (0, 1),
    ),
    "imbalanced_weights": (
        "imbalanced + model.class_weights balanced",
        [*CSV_DATA, "--model.class_weights=balanced"],
        (0, 1),
    ),
}
KEEP_MINORITY = 2  # clips kept per minority class and training fold (of 8)


def write_manifest(root: Path, fold: int, path: Path) -> list[str]:
    """The imbalanced ESC-10 manifest (absolute paths, ESC-50's folds, src_file groups); returns the minority classes."""
    with (root / "meta" / "esc50.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["esc10"] == "True"]
    classes = sorted({r["category"] for r in rows})
    minority = classes[1::2]
    kept, seen = [], {}
    for r in sorted(rows, key=lambda r: r["filename"]):
        key = (r["category"], r["fold"])
        if int(r["fold"]) != fold and r["category"] in minority:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > KEEP_MINORITY:
                continue
        kept.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "fold", "group"])
        for r in kept:
            out.writerow([(root / "audio" / r["filename"]).resolve(), r["category"], r["fold"], r["src_file"]])
    return minority


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument(
        "--root", type=Path, default=None, help="the ESC-50 release folder (default: $AUDIOCLS_ESC50_ROOT)"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results" / NAME)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds (default: each variant's)")
    parser.add_argument("--smoke", action="store_true", help="one batch per phase, one seed: check the arguments")
    args = parser.parse_args()
    args.root = esc50_root(args.root)
    manifest = args.out / "imbalanced.csv"
    minority = write_manifest(args.root, args.fold, manifest)
    (args.out / "study.json").write_text(json.dumps({"fold": args.fold, "minority": minority}, indent=2))
    jobs = []
    for seed in range(1 if args.smoke else max(max(VARIANTS[v][2]) for v in args.variants) + 1):
        for variant in args.variants:
            if seed not in VARIANTS[variant][2] or (args.seeds is not None and seed not in args.seeds):
                continue
            extra = [*esc10_stack(args.root), f"--data.fold={args.fold}"]
            extra += [a.format(manifest=manifest) for a in VARIANTS[variant][1]]
            if args.smoke:
                extra += [
                    "--trainer.max_epochs=1",
                    *(f"--trainer.limit_{p}_batches=1" for p in ("train", "val", "test")),
                ]
            name = f"{variant}-seed{seed}"
            jobs.append((name, fit_args(name, args.out, extra, seed), {"variant": variant, "seed": seed}))
    if not jobs:
        seeds = sorted({s for v in args.variants for s in VARIANTS[v][2]})
        parser.error(
            f"--seeds {' '.join(map(str, args.seeds))}: {', '.join(args.variants)} run seeds {seeds}; pick from those"
        )
    raise SystemExit(1 if run_fits(jobs, args.out) else 0)


if __name__ == "__main__":
    main()
