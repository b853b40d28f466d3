"""What the recipe's options do on ESC-10: weight averaging, the two pitch/time modes, class imbalance, as a study.

Writes a study file (a named axis ``variant``, :data:`VARIANTS`) and the imbalanced CSV manifest it needs into the
study folder, then runs ``audiocls study`` on it. Every fit is the shipped ``audiocls fit --config configs/esc10.yaml
--config configs/recipes/cpu.yaml --data.fold 1 --data.val_fold 2 --seed_everything S`` plus one variant's keys,
seeds 0 and 1. The objective is validation fold 2 (80 clips, never trained on); test fold 1's accuracy and
per-class recall are recorded beside it and choose nothing.

- ``recipe``: the shipped recipe as it is (spectrograms precomputed, time roll + masks).
- ``ema``: plus ``configs/callbacks/ema.yaml`` (Lightning's EMAWeightAveraging, decay 0.99): does averaging help?
- ``vocoder`` / ``spectral``: the frontend per batch (``data.precompute_frontend false``) with the paper's pitch
  shift [-2, 2] semitones and time stretch [0.9, 1.2] on half the clips, by the phase vocoder (the reference) or
  in the frontend (``augment.pitch_time_mode spectral``, issue 16's fast path): does the fast path train as well?
- ``imbalanced``, ``imbalanced_sampler``, ``imbalanced_weights``: the training folds with every second class cut
  to a quarter of its clips (8 of 32 per class, 4:1), the test and validation folds untouched, through a CSV
  manifest (``audiocls.data.folder.CSVDataModule``, with ESC-50's folds and src_file groups); then plus
  ``data.sampler balanced`` or ``model.class_weights balanced``: do they raise the minority classes' recall?

Running it again resumes the study (finished fits are not redone). Other arguments go to ``audiocls study``
(``--workers 2``, ``--report``) or, as there, to every fit.

    flock /tmp/audiocls-cpu.lock .venv/bin/python benchmarks/esc10_ablations.py > runs/esc10_ablations.log 2>&1 &
    .venv/bin/python benchmarks/results.py          # the tables in docs/RESULTS.md (from runs/studies/esc10_ablations)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = "esc10_ablations"
FOLD, VAL_FOLD = 1, 2  # the test fold (recorded beside) and the validation fold (the objective)
#: the environment variable naming the ESC-50 release folder (ESC-10 is its subset); benchmarks/results.py reads it too
ESC50_ROOT = "AUDIOCLS_ESC50_ROOT"
PITCH_TIME = {
    "data.init_args.precompute_frontend": False,
    "data.init_args.augment.pitch_shift": [-2.0, 2.0],
    "data.init_args.augment.time_stretch": [0.9, 1.2],
    "data.init_args.augment.pitch_time_p": 0.5,
}
CSV_DATA = {"data": "audiocls.data.folder.CSVDataModule", "data.init_args.manifest": "{manifest}"}
#: name -> the config keys it sets on the base stack (``config`` stacks one more file: ``--config=FILE``)
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "ema": {"config": "configs/callbacks/ema.yaml"},
    "vocoder": {**PITCH_TIME, "data.init_args.augment.pitch_time_mode": "vocoder"},
    "spectral": {**PITCH_TIME, "data.init_args.augment.pitch_time_mode": "spectral"},
    "imbalanced": CSV_DATA,
    "imbalanced_sampler": {**CSV_DATA, "data.init_args.sampler": "balanced"},
    "imbalanced_weights": {**CSV_DATA, "model.class_weights": "balanced"},
}
KEEP_MINORITY = 2  # clips kept per minority class and training fold (of 8)
SMOKE = ["--seeds=0", "--trainer.max_epochs=1", *(f"--trainer.limit_{p}_batches=1" for p in ("train", "val", "test"))]


def write_manifest(root: Path, fold: int, path: Path, val_fold: int | None = None) -> list[str]:
    """The imbalanced ESC-10 manifest (absolute paths, ESC-50's folds, src_file groups): every second class keeps
    :data:`KEEP_MINORITY` clips per training fold; ``fold`` and ``val_fold`` stay whole. Returns the minority
    classes."""
    with (root / "meta" / "esc50.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["esc10"] == "True"]
    classes = sorted({r["category"] for r in rows})
    minority = classes[1::2]
    kept, seen = [], {}
    for r in sorted(rows, key=lambda r: r["filename"]):
        key = (r["category"], r["fold"])
        if int(r["fold"]) not in (fold, val_fold) and r["category"] in minority:
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


def study_file(manifest: Path) -> dict:
    """The study: the base stack, fold 1 tested and fold 2 validated, the variants as one named axis, 2 seeds."""
    choices = [json.loads(json.dumps(v).replace("{manifest}", str(manifest))) for v in VARIANTS.values()]
    return {
        "name": NAME,
        "config": ["configs/esc10.yaml", "configs/recipes/cpu.yaml"],
        "search_only": {"data.fold": FOLD, "data.val_fold": VAL_FOLD},
        "space": {"variant": {"choices": choices}},
        "seeds": [0, 1],
        "objective": {"epoch": "final"},
        "sampler": "grid",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--root", type=Path, default=None, help=f"the ESC-50 release folder (default: ${ESC50_ROOT})")
    parser.add_argument("--out", type=Path, default=None, help=f"study folder (default: runs/studies/{NAME})")
    parser.add_argument("--smoke", action="store_true", help="one epoch, one batch per phase, seed 0: check the setup")
    args, rest = parser.parse_known_args(argv)
    root = args.root or (Path(os.environ[ESC50_ROOT]) if os.environ.get(ESC50_ROOT) else None)
    if root is None:
        parser.error(f"pass --root DIR or set {ESC50_ROOT}: the ESC-50 release folder (audio/, meta/esc50.csv)")
    root = root.expanduser().resolve()
    out = (args.out or ROOT / "runs" / "studies" / (NAME + ("_smoke" if args.smoke else ""))).expanduser().resolve()
    manifest = out / "imbalanced.csv"
    minority = write_manifest(root, FOLD, manifest, VAL_FOLD)
    path = out / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(study_file(manifest), sort_keys=False))
    (out / "ablations.json").write_text(  # for benchmarks/results.py: which setting is which variant
        json.dumps({"fold": FOLD, "val_fold": VAL_FOLD, "minority": minority, "variants": VARIANTS}, indent=2)
    )
    sys.path.insert(0, str(ROOT))  # the checkout's audiocls, when not installed
    from audiocls.cli import main as audiocls_main

    os.chdir(ROOT)  # the study's config paths are relative to the checkout, as a user types them
    study = ["study", f"--config={path}", f"--out={out}", f"--data.root={root}", *(SMOKE if args.smoke else []), *rest]
    return audiocls_main(study)


if __name__ == "__main__":
    sys.exit(main())
