"""Every figure of the README's results table and of docs/RESULTS.md, read from the runs (or made with ``--run``).

    python benchmarks/results.py                      # read runs/results/*, rewrite docs/RESULTS.md + the README table
    python benchmarks/results.py --run esc10_cv fsdd  # (re)run those experiments first, one at a time
    # the runs read AUDIOCLS_ESC50_ROOT / AUDIOCLS_FSDD_ROOT (data) and AUDIOCLS_WEIGHTS (ImageNet weights)
    python benchmarks/results.py --check              # print the tables, write nothing
    python benchmarks/results.py --run esc10_transfer esc10_ablations  # the fold-1 studies, through audiocls study

The two fold-1 studies are read from their study folders (``runs/studies/partial_transfer`` and
``runs/studies/esc10_ablations``; ``--studies`` names another parent): validation is the objective and the test
fold is shown beside it, labelled as not used to choose. Their commands, run by ``--run``:
``audiocls study --config configs/studies/partial_transfer.yaml --data.root ~/data/ESC-50-master`` and
``python benchmarks/esc10_ablations.py``. Without a study folder their committed records are shown as they are: those
figures came from the old runner, which compared the settings on the test fold, and their headings say so.

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
from audiocls.commands.study_run import repeat_name  # a study fit's folder name

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results"
TRANSFER = "esc10_transfer"
ABLATIONS = "esc10_ablations"
TRANSFER_COMMAND = "audiocls study --config configs/studies/partial_transfer.yaml --data.root ~/data/ESC-50-master"
ABLATIONS_COMMAND = "python benchmarks/esc10_ablations.py"
RECIPE = "esc10_recipe_search"
RECIPE_COMMAND = "audiocls study --config configs/studies/cpu_recipe_search.yaml --data.root ~/data/ESC-50-master"
#: record name -> (its study folder under --studies, the command that runs it with the data root from the environment)
STUDIES = {
    TRANSFER: ("partial_transfer", ("-m", "audiocls.cli", "study", "--config", "configs/studies/partial_transfer.yaml",
                                    "--data.root", "{esc50}")),
    ABLATIONS: ("esc10_ablations", ("benchmarks/esc10_ablations.py",)),
    RECIPE: ("cpu_recipe_search", ("-m", "audiocls.cli", "study", "--config", "configs/studies/cpu_recipe_search.yaml",
                                   "--data.root", "{esc50}", "--final")),
}  # fmt: skip
#: the recipe search's aim: ESC-10 5-fold final-epoch accuracy with ImageNet weights, no test-fold tuning
RECIPE_AIM = 0.98
STUDY_RESULT = "study_result.json"  # one fit of a study (audiocls.commands.study_run.RESULT)
PLOT = ROOT / "docs" / "esc10_transfer.png"
STUDY_DIR = ROOT / "runs" / "studies"
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


def run(name: str, runs: Path, studies: Path | None = None) -> int:
    """Run one experiment (a fit run replaces its previous folder; a cv run resumes its missing folds; a study
    resumes in its folder under ``studies``)."""
    if name in STUDIES:
        folder, args = STUDIES[name]
        args = [a.format(esc50=_from_env(*DATA_ROOTS["esc50"])) if "{esc50}" in a else a for a in args]
        where = (studies or STUDY_DIR) / folder
        cmd = [sys.executable, *args, "--out", str(where)]
        return _timed(cmd, where.with_name(f"{folder}.run.json"), {"argv": cmd[1:]}, resume=True)
    runs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "audiocls.cli", *command(name, runs)]
    if EXPERIMENTS[name].kind == "fit" and (runs / name / "run").exists():
        import shutil

        shutil.rmtree(runs / name / "run")
    return _timed(cmd, runs / f"{name}.run.json", {"command": shown(name), "argv": cmd[2:]})


def _timed(cmd: list[str], path: Path, record: dict, resume: bool = False) -> int:
    """Run ``cmd`` in the checkout; record at ``path`` its date, machine, wall time and ``uptime`` before and after
    (with ``resume``, a rerun that resumes adds its wall time to the earlier runs' and keeps their start)."""
    previous = (_load(path) or {}) if resume else {}
    record["started"] = previous.get("started") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record["uptime_before"] = previous.get("uptime_before") or _uptime()
    record["machine"] = f"{platform.machine()} {platform.processor()}".strip()
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    wall = round(time.monotonic() - t0 + (previous.get("wall_s") or 0), 1)
    record.update(wall_s=wall, uptime_after=_uptime(), returncode=code)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
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


def read(name: str, runs: Path, keep: bool = True, studies: Path | None = None) -> dict | None:
    """The figures of one experiment: from its run folder (a study: its folder under ``studies``), refreshing its
    record unless not ``keep``, else its committed record."""
    found = _read_run(name, runs, studies or STUDY_DIR)
    if found is None:
        return _load(RECORDS / f"{name}.json")
    if not keep:
        return found
    RECORDS.mkdir(parents=True, exist_ok=True)
    (RECORDS / f"{name}.json").write_text(json.dumps(found, indent=2) + "\n")
    return found


def _read_run(name: str, runs: Path, studies: Path) -> dict | None:
    if name == TRANSFER:
        return read_transfer(studies / STUDIES[TRANSFER][0])
    if name == ABLATIONS:
        return read_ablations(studies / STUDIES[ABLATIONS][0])
    if name == RECIPE:
        return read_recipe_search(studies / STUDIES[RECIPE][0])
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


# --- the fold-1 studies (audiocls study) --------------------------------------------------------------------------
# A study folder (``audiocls study --out``) holds ``study.json`` (its settings: the test and validation folds),
# ``study_results.json`` (one row per setting) and one ``trials/<setting key>/<repeat>/study_result.json`` per fit:
# its objective (the validation figure) and, beside it, its test-fold figures. The records of the old runner
# (``"runs"``: test-fold accuracies per run, kept in docs/results/) are shown as they were, labelled.
def read_study(folder: Path) -> dict | None:
    """A study folder's settings, each with its finished fits (objective, test figure, per-class test recall)."""
    report = _load(folder / "study_results.json")
    if not report:
        return None
    monitor = report["monitor"]
    test_key = "test/" + monitor.split("/", 1)[1]
    search = ((_load(folder / "study.json") or {}).get("identity") or {}).get("search_only") or {}
    settings = []
    for row in report["rows"]:
        fits = []
        for path in (folder / "trials" / row["key"]).glob(f"*/{STUDY_RESULT}"):
            f = _load(path) or {}
            if f.get("status") != "done":
                continue
            test = f.get("test") or {}
            fits.append(
                {
                    "seed": f["repeat"].get("seed_everything"),
                    "objective": f["objective"],
                    "test": test.get(test_key),
                    "f1_macro": test.get("test/f1_macro"),
                    "recall": {k.rsplit("/", 1)[-1]: v for k, v in test.items() if k.startswith("test/acc_class/")},
                    "wall_s": f.get("wall_s"),
                }
            )
        fits.sort(key=lambda f: (f["seed"] is None, f["seed"]))
        settings.append({"setting": row["setting"], "state": row["state"], "fits": fits})
    return {
        "source": "study",
        "study": report["study"],
        "monitor": monitor,
        "test_key": test_key,
        "epoch": report.get("epoch", "final"),
        "fold": search.get("data.fold"),
        "val_fold": search.get("data.val_fold"),
        "settings": settings,
    }


def _objective_head(s: dict) -> str:
    return f"{s['monitor']} % on validation fold {s['val_fold']} (the objective: mean ± std)"


def _test_head(s: dict) -> str:
    return f"{s['test_key']} % on test fold {s['fold']} (not used to choose)"


def _study_cells(fits: list[dict], state: str) -> str:
    """``objective mean ± std | per seed | test mean ± std | mean wall s`` of one setting's fits."""
    if not fits:
        return f"{state.lower()} | | |"
    per_seed = " / ".join(f"{100 * f['objective']:.2f}" for f in fits)
    wall = sum(f["wall_s"] or 0 for f in fits) / len(fits)
    objective, test = mean_std([f["objective"] for f in fits]), mean_std([f["test"] for f in fits])
    return f"**{_pm(objective)}** | {per_seed} | {_pm(test)} | {wall:.0f}"


def _study_intro(s: dict) -> str:
    n = sum(len(r["fits"]) for r in s["settings"])
    return (
        f"`{s['command']}`: {n} fits (`audiocls fit`, each command recorded in its `study_result.json`). The "
        f"objective is {s['monitor']} on validation fold {s['val_fold']} at the {s['epoch']} epoch (80 clips, never "
        f"trained on); test fold {s['fold']}'s {s['test_key']} is recorded beside it and chooses nothing. 80 clips: "
        "one clip is 1.25 points."
    )


# --- the partial-transfer study (configs/studies/partial_transfer.yaml) -----------------------------------------
def read_transfer(folder: Path) -> dict | None:
    """The partial-transfer study folder: :func:`read_study` with each setting's ``option`` and ``stage``."""
    s = read_study(folder)
    if s is None:
        return None
    for row in s["settings"]:
        ((key, stage),) = row["setting"].items()
        row["option"], row["stage"] = key.removeprefix("model."), int(stage)
    return {**s, "command": TRANSFER_COMMAND}


def _transfer_groups(t: dict) -> dict[tuple[str, int], list[dict]]:
    """``{(option, stage): [one entry per seed]}``: the old runner's runs, or a study's fits."""
    groups: dict[tuple[str, int], list[dict]] = {}
    if t.get("source") == "study":
        for row in t["settings"]:
            groups[(row["option"], row["stage"])] = row["fits"]
    else:
        for r in t["runs"]:
            groups.setdefault((r["option"], r["stage"]), []).append(r)
    return dict(sorted(groups.items()))


STAGE_NAMES = {1: "stem", 2: "s1", 3: "s2", 4: "s3", 5: "s4", 6: "head"}
STAGES_TEXT = (
    "Stages are timm's `feature_info` stages: 1 = stem, 2-5 = s1-s4. `freeze_until K` keeps stages 1..K at their "
    "ImageNet weights, frozen (BatchNorm in eval mode); `reinit_from K` starts stages K.. from random init. "
    "`freeze_until 0` is plain fine-tuning, `reinit_from 1` is random init; `reinit_from 6` (only the head) is "
    "plain fine-tuning again and is not run."
)


def _span(k: int) -> str:
    return "none" if k == 0 else STAGE_NAMES[1] if k == 1 else f"{STAGE_NAMES[1]}..{STAGE_NAMES[k]}"


def _kept_frozen(option: str, stage: int) -> str:
    kept_txt = "all" if option == "freeze_until" else _span(stage - 1)
    return f"{kept_txt} | {_span(stage) if option == 'freeze_until' else 'none'}"


def transfer_md(t: dict | None) -> list[str]:
    if not t:
        return []
    if t.get("source") != "study":
        return _old_transfer_md(t)
    out = [
        f"### Partial transfer: ESC-10, regnetx_002, the shipped recipe, validation fold {t['val_fold']} "
        f"(test fold {t['fold']} beside)",
        "",
        _study_intro(t),
        "",
        STAGES_TEXT,
        "",
        f"| run | stages kept from ImageNet | frozen | {_objective_head(t)} | per seed | {_test_head(t)} | mean wall s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    states = {(r["option"], r["stage"]): r["state"] for r in t["settings"]}
    for (option, stage), fits in _transfer_groups(t).items():
        cells = _study_cells(fits, states[(option, stage)])
        out.append(f"| `{option}={stage}` | {_kept_frozen(option, stage)} | {cells} |")
    return out + ["", f"![partial transfer]({PLOT.relative_to(ROOT / 'docs')})", ""]


def _old_transfer_md(t: dict) -> list[str]:
    """The old runner's record (test-fold accuracies per run), as it was committed."""
    first, last = min(r["started"] for r in t["runs"]), max(r["started"] for r in t["runs"])
    loads = sorted(r["load_before"] for r in t["runs"])
    out = [
        f"### Partial transfer: ESC-10 fold {t['fold']}, regnetx_002, the shipped recipe, 3 seeds (the old runner, "
        "compared on the test fold)",
        "",
        f"`{t['command']}` (the runner before `audiocls study`, since removed; each run: `audiocls fit --config "
        f"configs/esc10.yaml --data.fold {t['fold']} --seed_everything S --model.freeze_until K` or "
        f"`--model.reinit_from K`), {len(t['runs'])} runs, started {first} to {last}, 1-min load average before a run "
        f"{loads[0].split(' / ')[0]} to {loads[-1].split(' / ')[0]} (other sessions wrote code beside it; wall times "
        f"are indicative only). The figure compared is test fold {t['fold']}'s accuracy; `{TRANSFER_COMMAND}` "
        "regenerates this table with validation as the objective and the test fold beside it.",
        "",
        STAGES_TEXT,
        "",
        "| run | stages kept from ImageNet | frozen | final-epoch acc % (mean ± std, 3 seeds) | per seed | mean wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (option, stage), rs in _transfer_groups(t).items():
        seeds = " / ".join(f"{100 * r['acc']:.2f}" for r in sorted(rs, key=lambda r: r["seed"]))
        wall = sum(r["wall_s"] or 0 for r in rs) / len(rs)
        acc = _pm(mean_std([r["acc"] for r in rs]))
        out.append(f"| `{option}={stage}` | {_kept_frozen(option, stage)} | **{acc}** | {seeds} | {wall:.0f} |")
    out += ["", f"![partial transfer]({PLOT.relative_to(ROOT / 'docs')})", ""]
    return out


def transfer_plot(t: dict | None, path: Path) -> None:
    """A study's figures against the stage for both options: validation (the objective, solid, each seed a dot)
    and the test fold (dashed). The old runner's plot is committed as it was made and left alone."""
    if not t or t.get("source") != "study":
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: v for k, v in _transfer_groups(t).items() if v}
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (option, label, marker) in enumerate(
        (
            ("freeze_until", "freeze stages 1..K (pretrained, frozen)", "o"),
            ("reinit_from", "re-initialise stages K.. (random)", "s"),
        )
    ):
        stages = sorted(k for (o, k) in groups if o == option)
        val = [100 * mean_std([f["objective"] for f in groups[(option, k)]])["mean"] for k in stages]
        test = [100 * (mean_std([f["test"] for f in groups[(option, k)]])["mean"] or float("nan")) for k in stages]
        ax.plot(stages, val, marker=marker, color=f"C{i}", label=f"{label}: validation fold {t['val_fold']}")
        ax.plot(stages, test, "--", color=f"C{i}", alpha=0.6, label=f"test fold {t['fold']} (not used to choose)")
        for k in stages:
            fits = groups[(option, k)]
            ax.scatter([k] * len(fits), [100 * f["objective"] for f in fits], s=10, color="grey", alpha=0.6, zorder=3)
    ax.set_xticks(range(0, 7), ["none", "1 stem", "2 s1", "3 s2", "4 s3", "5 s4", "6 head"])
    ax.set_xlabel("stage K")
    ax.set_ylabel(f"{t['epoch']}-epoch accuracy %")
    ax.set_title("ESC-10 partial transfer, regnetx_002 (lines: mean over seeds; dots: seeds, validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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


def _variant_of(setting: dict, variants: dict[str, dict]) -> str:
    """The name ``benchmarks/esc10_ablations.py`` gives a setting (its manifest path aside), else its keys."""
    plain = {k: "{manifest}" if k == "data.init_args.manifest" else v for k, v in setting.items()}
    names = [name for name, keys in variants.items() if keys == plain]
    return names[0] if names else ", ".join(f"{k}={json.dumps(v)}" for k, v in setting.items())


def read_ablations(folder: Path) -> dict | None:
    """The ablations study folder: :func:`read_study` with each setting's ``variant`` and the minority classes
    (from ``ablations.json``, written there by benchmarks/esc10_ablations.py)."""
    s = read_study(folder)
    if s is None:
        return None
    info = _load(folder / "ablations.json") or {}
    for row in s["settings"]:
        row["variant"] = _variant_of(row["setting"], info.get("variants") or {})
    order = list(ABLATION_TEXT)
    s["settings"].sort(key=lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order), r["variant"]))
    return {**s, "command": ABLATIONS_COMMAND, "minority": info.get("minority", [])}


def _recall_split(r: dict, minority: list[str]) -> tuple[float | None, float | None]:
    """Mean per-class test recall over the minority and over the other classes of one run."""
    mino = [v for c, v in r["recall"].items() if c in minority]
    majo = [v for c, v in r["recall"].items() if c not in minority]
    return (sum(mino) / len(mino) if mino else None, sum(majo) / len(majo) if majo else None)


def ablations_md(a: dict | None) -> list[str]:
    if not a:
        return []
    if a.get("source") != "study":
        return _old_ablations_md(a)
    out = [
        f"### Recipe ablations: ESC-10, regnetx_002, validation fold {a['val_fold']} (test fold {a['fold']} beside)",
        "",
        _study_intro(a),
        "",
        f"| variant | what | {_objective_head(a)} | per seed | {_test_head(a)} | mean wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in a["settings"]:
        if not row["variant"].startswith("imbalanced"):
            what = ABLATION_TEXT.get(row["variant"], "")
            out.append(f"| `{row['variant']}` | {what} | {_study_cells(row['fits'], row['state'])} |")
    imbalanced = [row for row in a["settings"] if row["variant"].startswith("imbalanced")]
    if imbalanced:
        minority = a["minority"]
        out += [
            "",
            f"Class imbalance: the training folds keep 8 of the 32 clips of each of {', '.join(minority)} (the test "
            "and validation folds are untouched). Recall is test fold "
            f"{a['fold']}'s per-class accuracy (not used to choose), averaged over the five minority and the five "
            "majority classes.",
            "",
            f"| variant | what | {_objective_head(a)} | {_test_head(a)} | test macro F1 % | minority recall % | "
            "majority recall % | per seed (minority) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in imbalanced:
            fits = row["fits"]
            split = [_recall_split(f, minority) for f in fits]
            mino, majo = [m for m, _ in split], [m for _, m in split]
            out.append(
                f"| `{row['variant']}` | {ABLATION_TEXT.get(row['variant'], '')} | "
                f"**{_pm(mean_std([f['objective'] for f in fits]))}** | {_pm(mean_std([f['test'] for f in fits]))} | "
                f"{_pm(mean_std([f['f1_macro'] for f in fits]))} | {_pm(mean_std(mino))} | {_pm(mean_std(majo))} | "
                + " / ".join("n/a" if m is None else f"{100 * m:.1f}" for m in mino)
                + " |"
            )
    return out + [""]


def _old_ablations_md(a: dict) -> list[str]:
    """The old runner's record (test-fold figures per run), as it was committed."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(a["runs"], key=lambda r: (list(ABLATION_TEXT).index(r["variant"]), r["seed"])):
        groups.setdefault(r["variant"], []).append(r)
    first, last = min(r["started"] for r in a["runs"]), max(r["started"] for r in a["runs"])
    loads = sorted(float(r["load_before"].split(" / ")[0]) for r in a["runs"] if r["load_before"] != "n/a")
    out = [
        f"### Recipe ablations: ESC-10 fold {a['fold']}, regnetx_002 (the old runner, compared on the test fold)",
        "",
        f"`{a['command']}` (its version before `audiocls study`: each run `audiocls fit --config configs/esc10.yaml "
        f"--data.fold {a['fold']} --seed_everything S` plus the variant's arguments), "
        f"{len(a['runs'])} runs, started {first} to {last}, 1-min load average before a run "
        f"{loads[0] if loads else 'n/a'} to {loads[-1] if loads else 'n/a'} (other sessions tested code beside it "
        "at a lower priority; wall times are indicative only). 80 test clips: one clip is 1.25 points. The figure "
        f"compared is test fold {a['fold']}'s accuracy; `{ABLATIONS_COMMAND}` now runs the variants as a study that "
        "regenerates these tables with validation as the objective and the test fold beside it.",
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
            mino, majo = zip(*(_recall_split(r, minority) for r in rs), strict=True)
            out.append(
                f"| `{variant}` | {ABLATION_TEXT[variant]} | {_pm(mean_std([r['acc'] for r in rs]))} | "
                f"{_pm(mean_std([r['f1_macro'] for r in rs]))} | **{_pm(mean_std(list(mino)))}** | "
                f"{_pm(mean_std(list(majo)))} | " + " / ".join(f"{100 * m:.1f}" for m in mino) + " |"
            )
    return out + [""]


# --- the CPU recipe search (configs/studies/cpu_recipe_search.yaml) -----------------------------------------------
def read_recipe_search(folder: Path) -> dict | None:
    """The recipe search's folder: every setting tried (each fit's objective per validation fold, the test fold
    beside), the ``--final`` table when it has run, and the run record (date, load) when ``results.py`` ran it."""
    report = _load(folder / "study_results.json")
    if not report:
        return None
    search = ((_load(folder / "study.json") or {}).get("identity") or {}).get("search_only") or {}
    rows = []
    for row in report["rows"]:
        fits = [f for f in row.get("fits", []) if f.get("status") == "done"]
        rows.append({
            "setting": row["setting"], "state": row["state"], "n": row["n"], "objective": row["objective"],
            "test": row["test"], "wall_s": row["wall_s"], "error": row.get("error"),
            "per_repeat": {"/".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in f["repeat"].items()): f["objective"]
                           for f in fits},
        })  # fmt: skip
    final = _load(folder / "final_results.json")
    record = _load(folder.with_name(f"{folder.name}.run.json")) or {}
    fits = [f for row in report["rows"] for f in row.get("fits", []) if f.get("started")]
    if not record and fits:  # run by hand, not by --run: when and under what load its fits started
        loads = [f["load_before"][0] for f in fits if f.get("load_before")]
        info = [_load(folder / "trials" / row["key"] / repeat_name(f["repeat"]) / "runinfo.json") or {}
                for row in report["rows"] for f in row.get("fits", [])]  # fmt: skip
        record = {"started": min(f["started"] for f in fits), "machine": _machine(info),
                  "wall_s": sum(row["wall_s"] or 0 for row in report["rows"])}  # fmt: skip
        load = f"{_load_range(loads)} at the fits' starts" if loads else "n/a"
    else:
        load = f"{_load_avg(record.get('uptime_before'))} before, {_load_avg(record.get('uptime_after'))} after"
    if final:
        final = {**final, "record": _final_record(folder / "final")}
    return {
        "source": "study", "study": report["study"], "command": RECIPE_COMMAND, "monitor": report["monitor"],
        "epoch": report.get("epoch", "final"), "fold": search.get("data.fold"), "rows": rows, "final": final,
        "date": record.get("started", "n/a"), "machine": record.get("machine", "n/a"), "wall_s": record.get("wall_s"),
        "load": load,
    }  # fmt: skip


def _machine(infos: list[dict]) -> str:
    """``Linux-..., 2 CPUs``: the machine named by the first of these ``runinfo.json`` records that names it."""
    machine = next((f"{i['platform']}, {i['cpus']} CPUs" for i in infos if i.get("cpus")), None)
    return machine or next((i["platform"] for i in infos if i.get("platform")), "n/a")


def _load_range(loads: list[float]) -> str:
    return f"{min(loads):.2f} to {max(loads):.2f} (1 minute)"


def _final_record(folder: Path) -> dict:
    """When, where and under what load the ``--final`` cv runs ran, from their folds' ``runinfo.json`` (the first
    start, the machine, the load average at each start where recorded)."""
    infos = [i for p in sorted(folder.glob("*/fold_*/runinfo.json")) if (i := _load(p))]
    loads = [i["load_average"][0] for i in infos if i.get("load_average")]
    load = (f"{_load_range(loads)} at the starts of {len(loads)} of {len(infos)} folds" if loads
            else "not recorded (the folds ran before runs recorded it)")  # fmt: skip
    starts = [e["started"] for i in infos for e in (i, *i.get("earlier", [])) if e.get("started")]  # first start
    return {"started": min(starts, default="n/a"), "machine": _machine(infos), "folds": len(infos), "load": load}


def _final_wall(final: dict) -> float | None:
    walls = [v["wall_s"] for v in final["variants"].values() if v.get("wall_s") is not None]
    return sum(walls) if walls else None


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _value(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _finished(r: dict) -> int:
    return sum(row["objective"].get("mean") is not None for row in r["rows"])


def _tried(r: dict) -> str:
    """``6 settings (1 pruned or cut short)``: how many settings the search tried, and how many have no figure."""
    n, other = len(r["rows"]), len(r["rows"]) - _finished(r)
    return f"{n} setting{'s' * (n != 1)}" + (f" ({other} pruned or cut short)" if other else "")


def recipe_readme_row(r: dict | None) -> list[str]:
    """The README's row for the recipe search: its best setting on validation, the test fold beside."""
    best = next((row for row in (r or {}).get("rows", []) if row["objective"].get("mean") is not None), None)
    if best is None:
        return []
    setting = ", ".join(f"{_short(k)} {_value(v)}" for k, v in best["setting"].items())
    final_rows = []
    for variant, v in ((r.get("final") or {}).get("variants") or {}).items():
        if v["all"].get("mean") is None:
            continue
        spread = "" if v["seed_spread"].get("std") is None else (
            f"; seed-to-seed std of the 5-fold mean {100 * v['seed_spread']['std']:.2f}")  # fmt: skip
        init = {"pretrained": "ImageNet weights", "random": "random init"}.get(variant, variant)
        final_rows.append(
            f"| ESC-10, 5 official folds, the recipe chosen on validation, {len(v['per_seed'])} seeds ({variant}) "
            f"| {best['setting'].get('model.backbone', 'the chosen setting')}, {init} | {_pm(v['all'])} % over "
            f"{v['all']['n']} fold runs{spread} | {_minutes(_final_wall(r['final']))} "
            f"(all variants) | `{r['command']} --final` |"
        )
    return [
        f"| ESC-10, recipe search over {_tried(r)} (`audiocls study`, test fold {r['fold']} held out) "
        f"| best on validation: {setting} | val/acc {_pm(best['objective'])} % (validation folds); test fold "
        f"{r['fold']} {_pm(best['test'])} % (not used to choose) | {_minutes(r['wall_s'])} | `{r['command']}` |",
        *final_rows,
    ]


def recipe_md(r: dict | None) -> list[str]:
    if not r:
        return []
    keys = list(dict.fromkeys(k for row in r["rows"] for k in row["setting"]))
    out = [
        f"### CPU recipe search: ESC-10, test fold {r['fold']} held out, settings chosen on validation folds",
        "",
        f"`{r['command']} --final` (the search, then the chosen setting's 5-fold cv): {_finished(r)} "
        f"of the {len(r['rows'])} settings tried have a figure (the rest were pruned or cut short), "
        f"started {r['date']} on {r['machine']}, load average {r['load']}, {_minutes(r['wall_s'])} in all. Each "
        f"setting trains on three of folds 2-5 and is validated on a whole fourth (fold 2, then fold 3: 80 clips "
        f"each); the objective is their mean {r['monitor']} at the {r['epoch']} epoch. Test fold {r['fold']}'s "
        "accuracy is recorded beside it and chooses nothing. Sampler TPE, median pruning; the first setting is the "
        "recipe before the search.",
        "",
        "| rank | " + " | ".join(_short(k) for k in keys) + f" | state | {r['monitor']} % (objective) | per fold | "
        f"test fold {r['fold']} % (not used) | wall s |",
        "| --- " * (len(keys) + 6) + "|",
    ]
    for i, row in enumerate(r["rows"], 1):
        cells = " | ".join(_value(row["setting"].get(k, "")) for k in keys)
        state = row["state"].lower() + (f" ({row['error']})" if row.get("error") else "")
        per = " / ".join(f"{name}: {100 * v:.2f}" for name, v in sorted(row["per_repeat"].items()))
        out.append(f"| {i} | {cells} | {state.replace('|', '/')} | **{_pm(row['objective'])}** | {per} | "
                   f"{_pm(row['test'])} | {row['wall_s']:.0f} |")  # fmt: skip
    final = r.get("final")
    if not final:
        return out + ["", f"The chosen setting's 5-fold figure is not measured yet (`{r['command']} --final`).", ""]
    out += [
        "",
        "The setting ranked first on validation, as a 5-fold `audiocls cv` (every fold's test accuracy at the final "
        "epoch), per variant over seeds:",
        "",
        "| variant | 5-fold final-epoch accuracy % (mean ± std over seeds x folds) | n | per seed (5-fold mean) | "
        "seed-to-seed std of the 5-fold mean | per fold (mean over seeds) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rec = final.get("record") or {}
    for variant, v in final["variants"].items():
        per = ", ".join(f"seed {s}: {100 * m:.2f}" for s, m in v["per_seed"].items()) or "not run yet"
        spread = "n/a" if v["seed_spread"].get("std") is None else f"{100 * v['seed_spread']['std']:.2f}"
        folds = " / ".join(f"{k}: {100 * m:.2f}" for k, m in v.get("per_fold", {}).items())
        out.append(f"| {variant} | **{_pm(v['all'])}** | {v['all']['n']} | {per} | {spread} | {folds or 'n/a'} |")
    if rec.get("folds"):
        out += ["", f"The {rec['folds']} fold fits started {rec['started']} on {rec['machine']}, "
                f"{_minutes(_final_wall(final))} in all; load average {rec['load']}."]  # fmt: skip
    pre = final["variants"].get("pretrained", {}).get("all", {})
    if pre.get("mean") is not None:
        reached = "reached" if pre["mean"] >= RECIPE_AIM else "not reached"
        out += ["", f"The aim, >= {100 * RECIPE_AIM:.0f} % 5-fold final-epoch accuracy with ImageNet weights and no "
                f"test-fold tuning, is {reached} ({_pm(pre)} % over {pre['n']} fold runs)."]  # fmt: skip
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
    p.add_argument("--studies", default=str(STUDY_DIR), help="folder of the fold-1 studies' folders")
    p.add_argument("--check", action="store_true", help="print the tables only, write no file")
    opts = p.parse_args(argv)
    runs, studies = Path(opts.runs).resolve(), Path(opts.studies).resolve()
    for name in opts.run if opts.run is not None else []:
        if run(name, runs, studies):
            where = studies / STUDIES[name][0] if name in STUDIES else runs / name
            print(f"results: {name} failed; see its log under {where}", file=sys.stderr)
    found = {n: r for n in EXPERIMENTS if (r := read(n, runs, not opts.check)) is not None}
    transfer, ablations, recipe = (read(n, runs, not opts.check, studies) for n in (TRANSFER, ABLATIONS, RECIPE))
    missing = [n for n in EXPERIMENTS if n not in found]
    missing += [n for n, r in ((TRANSFER, transfer), (ABLATIONS, ablations), (RECIPE, recipe)) if not r]
    readme = readme_rows(found) + recipe_readme_row(recipe)
    doc = results_md(found) + recipe_md(recipe) + transfer_md(transfer) + ablations_md(ablations)
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
