"""Every figure of the README's results table and of docs/RESULTS.md, read from the runs (or made with ``--run``).

    python benchmarks/results.py                      # read runs/results/*, rewrite docs/RESULTS.md + the README table
    python benchmarks/results.py --run esc10_cv fsdd  # (re)run those experiments first, one at a time
    python benchmarks/results.py --check              # print the tables, write nothing

Each experiment is one shipped command (:data:`EXPERIMENTS`) run in ``<runs>/<name>``. ``--run`` records beside
it ``<name>.run.json``: the command, the date, the wall time and ``uptime`` before and after (the load average), so
a timed figure always carries the load it was measured under. Nothing here types a number: every figure is read
from the run folders (``cv_results.json`` of ``audiocls cv``, ``metrics.json`` of ``audiocls fit``).
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

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin (benchmarks/results.py) -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Experiment:
    """One shipped command. ``kind`` is ``cv`` (``audiocls cv``) or ``fit`` (``audiocls fit`` + final test)."""

    title: str
    kind: str
    args: tuple[str, ...]
    what: str


EXPERIMENTS = {
    "esc10_cv": Experiment(
        "ESC-10, 5 official folds",
        "cv",
        ("cv", "--config", "configs/esc10.yaml"),
        "regnetx_002, ImageNet weights, 44.1 kHz, 30 epochs",
    ),
    "esc10_cv_random": Experiment(
        "ESC-10, 5 official folds, random init",
        "cv",
        ("cv", "--config", "configs/esc10.yaml", "--model", "configs/model/random.yaml"),
        "regnetx_002, random init, same recipe",
    ),
    "fsdd": Experiment(
        "FSDD, official split (300 test clips)",
        "fit",
        ("fit", "--config", "configs/fsdd.yaml", "--data.root", "../shared/datasets/fsdd"),
        "regnetx_002, ImageNet weights, 8 kHz",
    ),
    "demo": Experiment(
        "synthetic, 10 classes, fold 1",
        "fit",
        ("fit", "--config", "configs/demo.yaml"),
        "mobilenetv3_small_100, random init",
    ),
}


def command(name: str, runs: Path) -> list[str]:
    """The full command line of experiment ``name`` with its output in ``runs/name``."""
    exp = EXPERIMENTS[name]
    if exp.kind == "cv":
        return [*exp.args, "--out", str(runs / name)]
    pre = "--trainer.logger.init_args"
    return [*exp.args, f"{pre}.save_dir={runs}", f"{pre}.name={name}", f"{pre}.version=run"]


def shown(name: str) -> str:
    """The command as a user types it (without the output folder)."""
    return "audiocls " + " ".join(EXPERIMENTS[name].args)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def run(name: str, runs: Path) -> int:
    """Run one experiment (a fit run replaces its previous folder; a cv run resumes its missing folds)."""
    runs.mkdir(parents=True, exist_ok=True)
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


def read(name: str, runs: Path) -> dict | None:
    """The figures of one experiment, or ``None`` when it has not been run."""
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


def readme_rows(found: dict) -> list[str]:
    rows = [
        "| dataset | model | final-epoch accuracy | wall (2-core CPU) | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in found.items():
        exp = EXPERIMENTS[name]
        if exp.kind == "cv":
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
        if exp.kind == "cv":
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
    p.add_argument("--run", nargs="*", default=None, choices=sorted(EXPERIMENTS), help="experiments to (re)run first")
    p.add_argument("--runs", default=str(ROOT / "runs" / "results"), help="folder of the experiments' run folders")
    p.add_argument("--check", action="store_true", help="print the tables only, write no file")
    opts = p.parse_args(argv)
    runs = Path(opts.runs).resolve()
    for name in opts.run if opts.run is not None else []:
        if run(name, runs):
            print(f"results: {name} failed; see its log under {runs / name}", file=sys.stderr)
    found = {n: r for n in EXPERIMENTS if (r := read(n, runs)) is not None}
    missing = [n for n in EXPERIMENTS if n not in found]
    readme, doc = readme_rows(found), results_md(found)
    print("\n".join(readme + [""] + doc))
    if missing:
        print(f"not run yet (python benchmarks/results.py --run {' '.join(missing)}): {', '.join(missing)}")
    if not opts.check:
        for path, lines in ((ROOT / "README.md", readme), (ROOT / "docs" / "RESULTS.md", doc)):
            if not replace_block(path, lines):
                print(f"results: {path} has no {BEGIN} ... {END} block; left unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
