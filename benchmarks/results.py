"""Every figure of the README's results table and of docs/RESULTS.md, read from the runs (or made with ``--run``).

    python benchmarks/results.py                      # read runs/results/*, rewrite docs/RESULTS.md + the README table
    python benchmarks/results.py --run esc10_cv fsdd  # (re)run those experiments first, one at a time
    # the runs read AUDIOCLS_ESC50_ROOT / AUDIOCLS_FSDD_ROOT (data) and AUDIOCLS_WEIGHTS (ImageNet weights)
    python benchmarks/results.py --check              # print the tables, write nothing
    python benchmarks/results.py --run esc10_transfer # the partial-transfer study (benchmarks/esc10_partial_transfer.py)

Each experiment is one shipped command (:data:`EXPERIMENTS`) run in ``<runs>/<name>``. ``--run`` records beside
it ``<name>.run.json``: the command, the date, the wall time and ``uptime`` before and after (the load average), so
a timed figure always carries the load it was measured under. Nothing here types a number: every figure is read
from the run folders (``cv_results.json`` of ``audiocls cv``, ``metrics.json`` of ``audiocls fit``).
The figures read from a run folder are also kept in ``docs/results/<name>.json`` (committed), so a fresh clone,
which has no ``runs/``, regenerates the same pages; the tables are rewritten only when every experiment has figures.
Run experiments one at a time on a small machine: parallel runs make every timing (and the schedule) wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from audiocls.commands.cv_report import mean_std  # the cv report's mean and sample std

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results"
TRANSFER = "esc10_transfer"
ABLATIONS = "esc10_ablations"
STUDIES = {TRANSFER: "esc10_partial_transfer.py", ABLATIONS: "esc10_ablations.py"}  # their own drivers
PLOT = ROOT / "docs" / "esc10_transfer.png"
BEGIN, END = "<!-- results:begin (benchmarks/results.py) -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Experiment:
    """One shipped command. ``kind`` is ``cv`` (``audiocls cv``) or ``fit`` (``audiocls fit`` + final test)."""

    title: str
    kind: str
    args: tuple[str, ...]
    what: str


CPU = "configs/recipes/cpu.yaml"
ESC10_CPU = ("--config", "configs/esc10.yaml", "--config", CPU, "--data.root", "{esc50}")
MIXTURES_CPU = ("--config", "configs/esc10_mixtures.yaml", "--config", CPU, "--model.label_smoothing", "0", "--data.root", "{esc50}")  # fmt: skip
#: the data folders the commands name: (environment variable a run reads it from, the folder a user types)
DATA_ROOTS = {
    "esc50": ("AUDIOCLS_ESC50_ROOT", "~/data/ESC-50-master"),
    "fsdd": ("AUDIOCLS_FSDD_ROOT", "~/data/free-spoken-digit-dataset-master"),
}

EXPERIMENTS = {
    "esc10_cv": Experiment(
        "ESC-10, 5 official folds",
        "cv",
        ("cv", *ESC10_CPU),
        "regnetx_002, ImageNet weights, 44.1 kHz, 30 epochs",
    ),
    "esc10_cv_random": Experiment(
        "ESC-10, 5 official folds, random init",
        "cv",
        ("cv", *ESC10_CPU, "--model", "configs/model/random.yaml"),
        "regnetx_002, random init, same recipe",
    ),
    "fsdd": Experiment(
        "FSDD, official split (300 test clips)",
        "fit",
        (
            "fit",
            "--config",
            "configs/fsdd.yaml",
            "--config",
            CPU,
            "--trainer.max_epochs",
            "20",
            "--data.root",
            "{fsdd}",
        ),
        "regnetx_002, ImageNet weights, 8 kHz",
    ),
    "demo": Experiment(
        "synthetic, 10 classes, fold 1",
        "fit",
        ("fit", "--config", "configs/demo.yaml"),
        "mobilenetv3_small_100, random init",
    ),
    "demo_multilabel": Experiment(
        "synthetic mixtures of 1-3 of 10 classes, fold 1 (multi-label)",
        "fit",
        ("fit", "--config", "configs/demo_multilabel.yaml"),
        "mobilenetv3_small_100, random init",
    ),
    "esc10_mixtures_cv": Experiment(
        "ESC-10 mixtures of 1-3 clips, 5 official folds (multi-label)",
        "cv",
        ("cv", *MIXTURES_CPU),
        "regnetx_002, ImageNet weights, 44.1 kHz, 30 epochs",
    ),
    "esc10_mixtures_cv_random": Experiment(
        "ESC-10 mixtures of 1-3 clips, 5 official folds, random init (multi-label)",
        "cv",
        ("cv", *MIXTURES_CPU, "--model", "configs/model/random.yaml"),
        "regnetx_002, random init, same recipe",
    ),
    "esc10_mixtures": Experiment(
        "ESC-10 mixtures of 1-3 clips, fold 1 (multi-label)",
        "fit",
        ("fit", *MIXTURES_CPU, "--data.fold", "1"),
        "regnetx_002, ImageNet weights, 44.1 kHz, 30 epochs",
    ),
    "esc10_mixtures_random": Experiment(
        "ESC-10 mixtures of 1-3 clips, fold 1, random init (multi-label)",
        "fit",
        ("fit", *MIXTURES_CPU, "--data.fold", "1", "--model", "configs/model/random.yaml"),
        "regnetx_002, random init, same recipe",
    ),
}


def _roots(args: tuple[str, ...], pick) -> list[str]:
    return [arg.format(**{key: pick(*where) for key, where in DATA_ROOTS.items()}) for arg in args]


def _from_env(variable: str, typed: str) -> str:
    import os

    if not os.environ.get(variable):
        raise SystemExit(f"results.py: set {variable} to the folder a user passes as {typed} (its data root)")
    return os.environ[variable]


def command(name: str, runs: Path) -> list[str]:
    """The full command line of experiment ``name`` with its output in ``runs/name``; data folders come from the
    environment (:data:`DATA_ROOTS`), ImageNet weights from the weights folder (``AUDIOCLS_WEIGHTS``)."""
    exp = EXPERIMENTS[name]
    args = _roots(exp.args, _from_env)
    if exp.kind == "cv":
        return [*args, "--out", str(runs / name)]
    pre = "--trainer.logger.init_args"
    return [*args, f"{pre}.save_dir={runs}", f"{pre}.name={name}", f"{pre}.version=run"]


def shown(name: str) -> str:
    """The command as a user types it (without the output folder), with the data folders a user would have."""
    return "audiocls " + " ".join(_roots(EXPERIMENTS[name].args, lambda _variable, typed: typed))


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def run(name: str, runs: Path) -> int:
    """Run one experiment (a fit run replaces its previous folder; a cv run resumes its missing folds)."""
    runs.mkdir(parents=True, exist_ok=True)
    if name in STUDIES:  # their own drivers: many fits in one process, resumable
        script = ROOT / "benchmarks" / STUDIES[name]
        return subprocess.run([sys.executable, str(script), "--out", str(runs / name)], cwd=ROOT).returncode
    cmd = [sys.executable, "-m", "audiocls.cli", *command(name, runs)]
    if EXPERIMENTS[name].kind == "fit" and (runs / name / "run").exists():
        import shutil

        shutil.rmtree(runs / name / "run")
    record = {"command": shown(name), "argv": cmd[2:], "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    record["uptime_before"], record["machine"] = _uptime(), f"{platform.machine()} {platform.processor()}".strip()
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    record.update(wall_s=round(time.monotonic() - t0, 1), uptime_after=_uptime(), returncode=code)
    (runs / f"{name}.run.json").write_text(json.dumps(record, indent=2))
    return code


# --- reading -----------------------------------------------------------------------------------------------------
def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_avg(uptime: str | None) -> str:
    m = re.search(r"load average: ([\d.]+), ([\d.]+), ([\d.]+)", uptime or "")
    return f"{m[1]} / {m[2]} / {m[3]}" if m else "n/a"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _pm(s: dict) -> str:
    return "n/a" if not s or s.get("mean") is None else f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def _minutes(s) -> str:
    return "n/a" if s is None else f"{s / 60:.1f} min"


def read(name: str, runs: Path, keep: bool = True) -> dict | None:
    """The figures of one experiment: from its run folder (refreshing its record unless not ``keep``), else its
    committed record."""
    found = _read_run(name, runs)
    if found is None:
        return _load(RECORDS / f"{name}.json")
    if not keep:
        return found
    RECORDS.mkdir(parents=True, exist_ok=True)
    (RECORDS / f"{name}.json").write_text(json.dumps(found, indent=2) + "\n")
    return found


def _read_run(name: str, runs: Path) -> dict | None:
    if name == TRANSFER:
        return read_transfer(runs / TRANSFER)
    if name == ABLATIONS:
        return read_ablations(runs / ABLATIONS)
    exp, rec = EXPERIMENTS[name], _load(runs / f"{name}.run.json") or {}
    base = {
        "name": name,
        "command": shown(name),
        "wall_s": rec.get("wall_s"),
        "load": f"{_load_avg(rec.get('uptime_before'))} before, {_load_avg(rec.get('uptime_after'))} after",
        "date": rec.get("started", "n/a"),
    }
    if exp.kind == "cv":
        report = _load(runs / name / "cv_results.json")
        if not report:
            return None
        return {**base, **report["summary"], "folds": report["folds"], "all_folds": report["all_folds"]}
    metrics = _load(runs / name / "run" / "metrics.json")
    return None if metrics is None else {**base, "metrics": metrics}


# --- writing -----------------------------------------------------------------------------------------------------
def _timing(r: dict) -> str:
    return f"{_minutes(r['wall_s'])} wall, load average (1/5/15 min) {r['load']}, started {r['date']}"


def _multilabel(r: dict) -> bool:
    """A multi-label experiment: its cv summary has mAP, its fit metrics test/mAP."""
    return "final_mAP" in r or "test/mAP" in r.get("metrics", {})


def readme_rows(found: dict) -> list[str]:
    rows = [
        "| dataset | model | final-epoch accuracy (multi-label: mAP) | wall (2-core CPU) | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in found.items():
        exp = EXPERIMENTS[name]
        if _multilabel(r) and exp.kind == "cv":
            fig = f"mAP {_pm(r['final_mAP'])} % (label-frequency baseline {_pm(r['mAP_baseline'])} %)"
        elif _multilabel(r):
            m = r["metrics"]
            fig = f"mAP {_pct(m.get('test/mAP'))} % (label-frequency baseline {_pct(m.get('test/mAP_baseline'))} %)"
        elif exp.kind == "cv":
            fig = f"{_pm(r['final_acc'])} % (best epoch, paper's protocol: {_pm(r['best_epoch_acc'])} %)"
        else:
            fig = f"{_pct(r['metrics'].get('test/acc'))} %"
        rows.append(f"| {exp.title} | {exp.what} | {fig} | {_minutes(r['wall_s'])} | `{r['command']}` |")
    return rows


def results_md(found: dict) -> list[str]:
    out = []
    for name, r in found.items():
        exp = EXPERIMENTS[name]
        out += [f"### {exp.title}: {exp.what}", "", f"`{r['command']}` — {_timing(r)}.", ""]
        if r.get("command_as_run"):  # recorded before configs became layers: the same settings, then one file
            out += [f"(Run as `{r['command_as_run']}`, the one-file config of the same settings.)", ""]
        if _multilabel(r):
            out += _multilabel_md(exp, r)
        elif exp.kind == "cv":
            out += [
                "| fold | final-epoch acc % | best-epoch acc % (paper's protocol) | best epoch | macro F1 % | wall s |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for f in r["folds"]:
                if f.get("status") != "done":
                    out.append(f"| {f['fold']} | {f.get('status')} | | | | |")
                    continue
                out.append(
                    f"| {f['fold']} | {_pct(f['final_acc'])} | {_pct(f['best_epoch_acc'])} | "
                    f"{f['best_epoch']} of {f['epochs']} | {_pct(f['macro_f1'])} | {f['wall_s']:.0f} |"
                )
            out.append(
                f"| **mean ± std** | **{_pm(r['final_acc'])}** | {_pm(r['best_epoch_acc'])} | | {_pm(r['macro_f1'])} | |"
            )
        else:
            m = r["metrics"]
            out += [
                "| test/acc % | test/f1_macro % | test/loss |",
                "| --- | --- | --- |",
                f"| **{_pct(m.get('test/acc'))}** | {_pct(m.get('test/f1_macro'))} | {m.get('test/loss', float('nan')):.4f} |",
            ]
        out.append("")
    if "esc10_mixtures" in found and "esc10_mixtures_random" in found:
        p, q = found["esc10_mixtures"]["metrics"], found["esc10_mixtures_random"]["metrics"]
        out += [
            "### ImageNet-pretrained vs random initialisation (ESC-10 mixtures, fold 1, the same recipe)",
            "",
            "| init | final-epoch test mAP % | F1 macro % @0.5 | F1 macro % @tuned thresholds | label-frequency mAP % |",
            "| --- | --- | --- | --- | --- |",
        ]
        for label, m in (("ImageNet (regnetx_002 weights file)", p), ("random", q)):
            out.append(
                f"| {label} | **{_pct(m.get('test/mAP'))}** | {_pct(m.get('test/f1_macro'))} | "
                f"{_pct(m.get('test/f1_macro_tuned'))} | {_pct(m.get('test/mAP_baseline'))} |"
            )
        out += ["", "One fold (80 test mixtures), one seed: a first figure, not a cross-validated one.", ""]
    if "esc10_cv" in found and "esc10_cv_random" in found:
        p, q = found["esc10_cv"], found["esc10_cv_random"]
        out += [
            "### ImageNet-pretrained vs random initialisation (ESC-10, all 5 folds, the same recipe)",
            "",
            "| init | final-epoch acc % (mean ± std) | best-epoch acc % (paper's protocol) | macro F1 % |",
            "| --- | --- | --- | --- |",
            f"| ImageNet (regnetx_002 weights file) | **{_pm(p['final_acc'])}** | {_pm(p['best_epoch_acc'])} | "
            f"{_pm(p['macro_f1'])} |",
            f"| random | **{_pm(q['final_acc'])}** | {_pm(q['best_epoch_acc'])} | {_pm(q['macro_f1'])} |",
            "",
            "std is the sample standard deviation over the 5 folds (80 test clips each).",
            "",
        ]
    return out


def _multilabel_md(exp: Experiment, r: dict) -> list[str]:
    """The table of a multi-label experiment: mAP next to its label-frequency baseline, F1 at 0.5."""
    if exp.kind == "fit":
        m = r["metrics"]
        return [
            "| test/mAP % | label-frequency mAP % | test/f1_micro % @0.5 | test/f1_macro % @0.5 | "
            "test/f1_macro % at the tuned thresholds |",
            "| --- | --- | --- | --- | --- |",
            f"| **{_pct(m.get('test/mAP'))}** | {_pct(m.get('test/mAP_baseline'))} | {_pct(m.get('test/f1_micro'))} | "
            f"{_pct(m.get('test/f1_macro'))} | {_pct(m.get('test/f1_macro_tuned'))} |",
        ]
    out = [
        "| fold | final-epoch mAP % | best-epoch mAP % (paper's protocol) | best epoch | F1 micro % @0.5 | "
        "F1 macro % @0.5 | label-frequency mAP % | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in r["folds"]:
        if f.get("status") != "done":
            out.append(f"| {f['fold']} | {f.get('status')} | | | | | | |")
            continue
        out.append(
            f"| {f['fold']} | {_pct(f['final_mAP'])} | {_pct(f['best_epoch_mAP'])} | {f['best_epoch']} of "
            f"{f['epochs']} | {_pct(f['f1_micro'])} | {_pct(f['f1_macro'])} | {_pct(f['mAP_baseline'])} | "
            f"{f['wall_s']:.0f} |"
        )
    out.append(
        f"| **mean ± std** | **{_pm(r['final_mAP'])}** | {_pm(r['best_epoch_mAP'])} | | {_pm(r['f1_micro'])} | "
        f"{_pm(r['f1_macro'])} | {_pm(r['mAP_baseline'])} | |"
    )
    return out


# --- the partial-transfer study (benchmarks/esc10_partial_transfer.py) -----------------------------------------
def read_transfer(root: Path) -> dict | None:
    """Every finished run of the study: ``{"runs": [{option, stage, seed, acc, f1, wall_s, load}], ...}``."""
    rows = []
    for rec_path in sorted(root.glob("*.run.json")):
        rec = _load(rec_path) or {}
        metrics = _load(root / rec_path.name.removesuffix(".run.json") / "run" / "metrics.json")
        if not metrics or rec.get("returncode") != 0:
            continue
        option, stage = rec["item"].split("=")
        rows.append(
            {
                "option": option,
                "stage": int(stage),
                "seed": rec["seed"],
                "acc": metrics["test/acc"],
                "f1_macro": metrics.get("test/f1_macro"),
                "wall_s": rec.get("wall_s"),
                "load_before": _load_avg(rec.get("uptime_before")),
                "started": rec.get("started"),
            }
        )
    if not rows:
        return None
    return {"command": "python benchmarks/esc10_partial_transfer.py", "fold": rec.get("fold", 1), "runs": rows}


def _transfer_groups(t: dict) -> dict[tuple[str, int], list[dict]]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in t["runs"]:
        groups.setdefault((r["option"], r["stage"]), []).append(r)
    return dict(sorted(groups.items()))


STAGE_NAMES = {1: "stem", 2: "s1", 3: "s2", 4: "s3", 5: "s4", 6: "head"}


def _span(k: int) -> str:
    return "none" if k == 0 else STAGE_NAMES[1] if k == 1 else f"{STAGE_NAMES[1]}..{STAGE_NAMES[k]}"


def transfer_md(t: dict | None) -> list[str]:
    if not t:
        return []
    first, last = min(r["started"] for r in t["runs"]), max(r["started"] for r in t["runs"])
    loads = sorted(r["load_before"] for r in t["runs"])
    out = [
        f"### Partial transfer: ESC-10 fold {t['fold']}, regnetx_002, the shipped recipe, 3 seeds",
        "",
        f"`{t['command']}` (each run: `audiocls fit --config configs/esc10.yaml --data.fold {t['fold']} "
        "--seed_everything S --model.freeze_until K` or `--model.reinit_from K`), "
        f"{len(t['runs'])} runs, started {first} to {last}, 1-min load average before a run "
        f"{loads[0].split(' / ')[0]} to {loads[-1].split(' / ')[0]} (other sessions wrote code beside it; "
        "wall times are indicative only).",
        "",
        "Stages are timm's `feature_info` stages: 1 = stem, 2-5 = s1-s4. `freeze_until K` keeps stages 1..K at their "
        "ImageNet weights, frozen (BatchNorm in eval mode); `reinit_from K` starts stages K.. from random init. "
        "`freeze_until 0` is plain fine-tuning, `reinit_from 1` is random init; `reinit_from 6` (only the head) is "
        "plain fine-tuning again and is not run.",
        "",
        "| run | stages kept from ImageNet | frozen | final-epoch acc % (mean ± std, 3 seeds) | per seed | mean wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (option, stage), rs in _transfer_groups(t).items():
        kept_txt = "all" if option == "freeze_until" else _span(stage - 1)
        frozen = _span(stage) if option == "freeze_until" else "none"
        seeds = " / ".join(f"{100 * r['acc']:.2f}" for r in sorted(rs, key=lambda r: r["seed"]))
        wall = sum(r["wall_s"] or 0 for r in rs) / len(rs)
        acc = _pm(mean_std([r["acc"] for r in rs]))
        out.append(f"| `{option}={stage}` | {kept_txt} | {frozen} | **{acc}** | {seeds} | {wall:.0f} |")
    out += ["", f"![partial transfer]({PLOT.relative_to(ROOT / 'docs')})", ""]
    return out


def transfer_plot(t: dict | None, path: Path) -> None:
    """Accuracy vs stage for both options: mean over seeds with each seed as a dot."""
    if not t:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _transfer_groups(t)
    fig, ax = plt.subplots(figsize=(7, 4))
    for option, label, marker in (
        ("freeze_until", "freeze stages 1..K (pretrained, frozen)", "o"),
        ("reinit_from", "re-initialise stages K.. (random)", "s"),
    ):
        stages = sorted(k for (o, k) in groups if o == option)
        means = [100 * mean_std([r["acc"] for r in groups[(option, k)]])["mean"] for k in stages]
        ax.plot(stages, means, marker=marker, label=label)
        for k in stages:
            ax.scatter(
                [k] * len(groups[(option, k)]),
                [100 * r["acc"] for r in groups[(option, k)]],
                s=10,
                color="grey",
                alpha=0.6,
                zorder=3,
            )
    ax.set_xticks(range(0, 7), ["none", "1 stem", "2 s1", "3 s2", "4 s3", "5 s4", "6 head"])
    ax.set_xlabel("stage K")
    ax.set_ylabel("final-epoch test acc % (fold 1)")
    ax.set_title("ESC-10 partial transfer, regnetx_002 (line: mean of 3 seeds; dots: seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the recipe ablations (benchmarks/esc10_ablations.py) -------------------------------------------------------
ABLATION_TEXT = {
    "recipe": "the shipped recipe",
    "ema": "+ `--config configs/callbacks/ema.yaml` (EMA of the weights, decay 0.99)",
    "vocoder": "frontend per batch + paper's pitch/time on half the clips, phase vocoder",
    "spectral": "frontend per batch + the same pitch/time draws, `augment.pitch_time_mode: spectral`",
    "imbalanced": "every second class at 1/4 of its training clips (4:1)",
    "imbalanced_sampler": "imbalanced + `--data.init_args.sampler balanced`",
    "imbalanced_weights": "imbalanced + `--model.class_weights balanced`",
}


def read_ablations(root: Path) -> dict | None:
    """Every finished run of the ablations: ``{"fold", "minority", "runs": [{variant, seed, acc, f1, ...}]}``."""
    study, rows = _load(root / "study.json") or {}, []
    for rec_path in sorted(root.glob("*.run.json")):
        rec = _load(rec_path) or {}
        metrics = _load(root / rec_path.name.removesuffix(".run.json") / "run" / "metrics.json")
        if not metrics or rec.get("returncode") != 0:
            continue
        recall = {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("test/acc_class/")}
        rows.append(
            {
                "variant": rec["variant"],
                "seed": rec["seed"],
                "acc": metrics["test/acc"],
                "f1_macro": metrics.get("test/f1_macro"),
                "recall": recall,
                "wall_s": rec.get("wall_s"),
                "load_before": _load_avg(rec.get("uptime_before")),
                "started": rec.get("started"),
            }
        )
    # runs recorded earlier (committed, e.g. from another machine) and not in this folder stay: a session that
    # adds seeds keeps the others' figures
    recorded = _load(RECORDS / f"{ABLATIONS}.json") or {}
    done = {(r["variant"], r["seed"]) for r in rows}
    rows += [r for r in recorded.get("runs", []) if (r["variant"], r["seed"]) not in done]
    if not rows:
        return None
    study = study or recorded
    command = "python benchmarks/esc10_ablations.py"
    return {"command": command, "fold": study.get("fold", 1), "minority": study.get("minority", []), "runs": rows}


def ablations_md(a: dict | None) -> list[str]:
    if not a:
        return []
    groups: dict[str, list[dict]] = {}
    for r in sorted(a["runs"], key=lambda r: (list(ABLATION_TEXT).index(r["variant"]), r["seed"])):
        groups.setdefault(r["variant"], []).append(r)
    first, last = min(r["started"] for r in a["runs"]), max(r["started"] for r in a["runs"])
    loads = sorted(float(r["load_before"].split(" / ")[0]) for r in a["runs"] if r["load_before"] != "n/a")
    out = [
        f"### Recipe ablations: ESC-10 fold {a['fold']}, regnetx_002",
        "",
        f"`{a['command']}` (each run: `audiocls fit --config configs/esc10.yaml --data.fold {a['fold']} "
        "--seed_everything S` plus the variant's arguments, listed in the script), "
        f"{len(a['runs'])} runs, started {first} to {last}, 1-min load average before a run "
        f"{loads[0] if loads else 'n/a'} to {loads[-1] if loads else 'n/a'} (other sessions tested code beside it "
        "at a lower priority; wall times are indicative only). 80 test clips: one clip is 1.25 points.",
        "",
        "| variant | what | final-epoch acc % (mean ± std) | per seed | mean wall s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant, rs in groups.items():
        if variant.startswith("imbalanced"):
            continue
        seeds = " / ".join(f"{100 * r['acc']:.2f}" for r in rs)
        wall = sum(r["wall_s"] or 0 for r in rs) / len(rs)
        acc = _pm(mean_std([r["acc"] for r in rs]))
        out.append(f"| `{variant}` | {ABLATION_TEXT[variant]} | **{acc}** | {seeds} | {wall:.0f} |")
    minority = a["minority"]
    if any(v.startswith("imbalanced") for v in groups):
        out += [
            "",
            f"Class imbalance: the training folds keep 8 of the 32 clips of each of {', '.join(minority)} "
            "(the test fold is untouched). Recall is the test fold's per-class accuracy, averaged over the five "
            "minority and the five majority classes.",
            "",
            "| variant | what | acc % | macro F1 % | minority recall % | majority recall % | per seed (minority) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for variant, rs in groups.items():
            if not variant.startswith("imbalanced"):
                continue
            mino = [sum(r["recall"][c] for c in minority) / len(minority) for r in rs]
            majo = [
                sum(v for c, v in r["recall"].items() if c not in minority) / (len(r["recall"]) - len(minority))
                for r in rs
            ]
            out.append(
                f"| `{variant}` | {ABLATION_TEXT[variant]} | {_pm(mean_std([r['acc'] for r in rs]))} | "
                f"{_pm(mean_std([r['f1_macro'] for r in rs]))} | **{_pm(mean_std(mino))}** | {_pm(mean_std(majo))} | "
                + " / ".join(f"{100 * m:.1f}" for m in mino)
                + " |"
            )
    return out + [""]


def replace_block(path: Path, lines: list[str]) -> bool:
    """Replace the text between the markers of ``path``; False when the markers are absent."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument(
        "--run", nargs="*", default=None, choices=sorted([*EXPERIMENTS, *STUDIES]), help="experiments to (re)run first"
    )
    p.add_argument("--runs", default=str(ROOT / "runs" / "results"), help="folder of the experiments' run folders")
    p.add_argument("--check", action="store_true", help="print the tables only, write no file")
    opts = p.parse_args(argv)
    runs = Path(opts.runs).resolve()
    for name in opts.run if opts.run is not None else []:
        if run(name, runs):
            print(f"results: {name} failed; see its log under {runs / name}", file=sys.stderr)
    found = {n: r for n in EXPERIMENTS if (r := read(n, runs, not opts.check)) is not None}
    transfer, ablations = read(TRANSFER, runs, not opts.check), read(ABLATIONS, runs, not opts.check)
    missing = [n for n in EXPERIMENTS if n not in found]
    missing += [n for n, r in ((TRANSFER, transfer), (ABLATIONS, ablations)) if not r]
    readme, doc = readme_rows(found), results_md(found) + transfer_md(transfer) + ablations_md(ablations)
    print("\n".join(readme + [""] + doc))
    if missing:
        print(f"not run yet (python benchmarks/results.py --run {' '.join(missing)}): {', '.join(missing)}")
        print("results: the README and docs/RESULTS.md are left unchanged until every experiment has figures")
        return 1
    if not opts.check:
        transfer_plot(transfer, PLOT)
        for path, lines in ((ROOT / "README.md", readme), (ROOT / "docs" / "RESULTS.md", doc)):
            if not replace_block(path, lines):
                print(f"results: {path} has no {BEGIN} ... {END} block; left unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
