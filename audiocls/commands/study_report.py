"""A study's report: one row per setting (mean ± std over its repeats, n, wall time) as Markdown, CSV and JSON, a
plot of the objective against each searched axis, and the ``--final`` table (the chosen setting's cv over seeds).

The objective (validation) and the test fold's figure are separate columns; the test figure is recorded beside, and
nothing here chooses on it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import socket
from pathlib import Path

import numpy as np

from audiocls.commands.cv_report import mean_std
from audiocls.commands.study_run import RESULT, pid_alive, repeat_name
from audiocls.commands.study_spec import StudySpec
from audiocls.files import atomic_write_text

__all__ = ["setting_rows", "write_study_report", "plot_axes", "write_final_report"]

STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "INTERRUPTED": 3, "WAITING": 4, "FAIL": 5}


def _fmt(stats: dict, scale: float) -> str:
    return "n/a" if stats["mean"] is None else f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


def setting_rows(study, spec: StudySpec, out: Path, monitor: str, mode: str) -> list[dict]:
    """One dict per setting tried: its trials' best state, its finished fits' figures, best objective first."""
    test_key = "test/" + monitor.split("/", 1)[1]
    by_key: dict[str, dict] = {}
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("key")
        if key is None:
            continue
        row = by_key.setdefault(key, {"key": key, "setting": t.user_attrs.get("setting", {}), "trials": [],
                                      "state": "FAIL", "error": None})  # fmt: skip
        row["trials"].append(t.number)
        state = t.state.name
        if (
            state == "RUNNING"
            and t.user_attrs.get("host") == socket.gethostname()
            and not pid_alive(t.user_attrs.get("pid"))
        ):
            state = "INTERRUPTED"  # its driver is gone (killed): the next run of the command runs it again
            row["error"] = row["error"] or "cut short: its process is gone; run the same command again to resume"
        if STATE_ORDER.get(state, 9) < STATE_ORDER.get(row["state"], 9):
            row["state"] = state
        if t.user_attrs.get("error") and row["error"] is None:
            row["error"] = t.user_attrs["error"].splitlines()[-1][:200]
        if "retry" in t.user_attrs and state == "FAIL" and row["error"] is None:
            row["error"] = f"cut short: {t.user_attrs['retry']}"
    rows = []
    for row in by_key.values():
        fits = []
        for point in spec.repeat_points():
            path = out / "trials" / row["key"] / repeat_name(point) / RESULT
            if path.is_file():
                fits.append(json.loads(path.read_text()))
        done = [f for f in fits if f["status"] == "done"]
        row["fits"] = fits
        row["n"] = len(done)
        row["objective"] = mean_std([f["objective"] for f in done])
        row["test"] = mean_std([f["test"].get(test_key) for f in done])
        row["wall_s"] = round(sum(f["wall_s"] for f in fits), 1)
        if row["state"] == "COMPLETE":
            row["error"] = None
        rows.append(row)
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda r: (r["objective"]["mean"] is None, sign * (r["objective"]["mean"] or 0.0)))
    return rows


def _label(setting: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in setting.items())


def write_study_report(out: Path, spec: StudySpec, rows: list[dict], monitor: str, scale: float) -> str:
    """Write ``study_results.{md,csv,json}`` under ``out``; return the Markdown."""
    test_key = "test/" + monitor.split("/", 1)[1]
    unit = " %" if scale == 100 else ""
    head = [
        f"# Study {spec.name}",
        "",
        f"Objective: {monitor} at the {spec.epoch} epoch, mean over each setting's repeats "
        f"({' x '.join(f'{k} {list(v)}' for k, v in spec.repeats) or 'one fit'}); the test fold's {test_key} is "
        "recorded beside it and is not used to choose. Sampler: " + spec.sampler + ".",
        "",
        f"| rank | setting | state | n | {monitor}{unit} (objective) | {test_key}{unit} (not used) | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    when = _when(rows)
    if when:
        head.insert(3, when)
    lines = []
    for i, r in enumerate(rows, 1):
        state = r["state"].lower() + (f": {r['error']}" if r["error"] else "")
        lines.append(f"| {i} | {_label(r['setting'])} | {state.replace('|', '/')} | {r['n']} | "
                     f"{_fmt(r['objective'], scale)} | {_fmt(r['test'], scale)} | {r['wall_s']:.0f} |")  # fmt: skip
    text = "\n".join(head + lines) + "\n"
    atomic_write_text(out / "study_results.md", text)
    atomic_write_text(out / "study_results.json", json.dumps({"study": spec.name, "monitor": monitor,
                      "epoch": spec.epoch, "rows": rows}, indent=2, default=str))  # fmt: skip
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["rank", "setting", "state", "n", f"{monitor} mean", f"{monitor} std", f"{test_key} mean",
                     f"{test_key} std", "wall_s", "error"])  # fmt: skip
    for i, r in enumerate(rows, 1):
        o, t = r["objective"], r["test"]
        writer.writerow([i, _label(r["setting"]), r["state"].lower(), r["n"], o["mean"], o["std"], t["mean"], t["std"],
                         r["wall_s"], r["error"] or ""])  # fmt: skip
    atomic_write_text(out / "study_results.csv", buf.getvalue())
    return text


def _when(rows: list[dict]) -> str:
    """``Fits ran ... (1-minute load average at their starts a to b).``: wall times mean little without the load."""
    fits = [f for r in rows for f in r["fits"] if f.get("started")]
    if not fits:
        return ""
    loads = [f["load_before"][0] for f in fits if f.get("load_before")]
    text = f"Fits ran from {min(f['started'] for f in fits)} to {max(f['started'] for f in fits)} (starts)"
    return text + (f", 1-minute load average at their starts {min(loads):.2f} to {max(loads):.2f}." if loads else ".")


def _series(spec: StudySpec, axis, rows: list[dict]) -> dict[str, list[tuple]]:
    """``{line name: [(x, objective values, test values)]}`` for one axis: a numeric axis is one line against its
    value; a named axis whose choices each set one numeric key is one line per key (the paper's transfer plot)."""
    lines: dict[str, list[tuple]] = {}
    for r in rows:
        done = [f for f in r["fits"] if f["status"] == "done"]
        if not done:
            continue
        vals = [f["objective"] for f in done]
        tests = [next(iter(v for k, v in f["test"].items() if k.startswith("test/")), math.nan) for f in done]
        if axis.bundle:
            picked = [c for c in axis.choices if all(r["setting"].get(k) == v for k, v in c.items())]
            if not picked:
                continue
            choice = max(picked, key=len)  # the most specific: an empty choice (the base) matches every setting
            if len(choice) == 1 and isinstance(next(iter(choice.values())), (int, float)):
                ((name, x),) = choice.items()
            else:
                name, x = axis.name, axis.choices.index(choice)
        else:
            name, x = axis.name, r["setting"].get(axis.name)
        lines.setdefault(name, []).append((x, vals, tests))
    return lines


def plot_axes(out: Path, spec: StudySpec, rows: list[dict], monitor: str, scale: float) -> list[Path]:
    """One PNG per searched axis: the objective of every fit (dots) and each setting's mean (line), the test fold's
    mean dashed; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for axis in spec.axes:
        lines = _series(spec, axis, rows)
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        categorical = False
        for i, (name, points) in enumerate(sorted(lines.items())):
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in points):
                categorical = True
                labels = sorted({json.dumps(x) for x, _, _ in points})
                points = [(labels.index(json.dumps(x)), v, t) for x, v, t in points]
            points.sort(key=lambda p: p[0])
            color = f"C{i}"
            for x, vals, _ in points:
                ax.scatter([x] * len(vals), [scale * v for v in vals], color=color, alpha=0.35, s=14)
            xs = [p[0] for p in points]
            ax.plot(
                xs, [scale * float(np.mean(v)) for _, v, _ in points], "-o", color=color, label=f"{name}: {monitor}"
            )
            ax.plot(xs, [scale * float(np.nanmean(t)) for _, _, t in points], "--", color=color, alpha=0.6,
                    label=f"{name}: test fold (not used to choose)")  # fmt: skip
            if categorical:
                ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
        if axis.log and not categorical:
            ax.set_xscale("log")
        ax.set_xlabel(axis.name if not axis.bundle else "stage / value")
        ax.set_ylabel(f"{monitor}{' %' if scale == 100 else ''} ({spec.epoch} epoch)")
        ax.set_title(f"study {spec.name}: {axis.name}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"study_{axis.name.replace('.', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_final_report(out: Path, spec: StudySpec, chosen: dict, runs: dict[str, dict[int, Path]], key: str) -> str:
    """The chosen setting's cv per variant over seeds: mean ± std over every seed x fold, each seed's fold mean and
    the seed-to-seed spread of that mean. ``runs`` is ``{variant: {seed: cv folder}}``; writes ``final_results.*``."""
    lines = [f"# Study {spec.name}: the chosen setting on the test folds", "",
             f"Chosen on validation: {_label(chosen) or '(the base config)'}", "",
             f"| variant | final-epoch {key} % (mean ± std, seeds x folds) | n | per seed (fold mean) | "
             "seed-to-seed std of the fold mean |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    report = {"chosen": chosen, "variants": {}}
    for variant, seeds in runs.items():
        values, per_seed, per_fold, wall = [], {}, {}, 0.0
        for seed, folder in seeds.items():
            path = folder / "cv_results.json"
            if not path.is_file():
                continue
            cv = json.loads(path.read_text())
            done = [f for f in cv["folds"] if f.get("status") == "done"]
            folds = [f.get(f"final_{key}") for f in done]
            values += folds
            wall += cv.get("wall_s_total") or 0.0
            for f in done:
                per_fold.setdefault(str(f["fold"]), []).append(f.get(f"final_{key}"))
            if folds:
                per_seed[seed] = float(np.mean(folds))
        stats = mean_std(values)
        spread = mean_std(list(per_seed.values()))
        report["variants"][variant] = {
            "all": stats, "per_seed": per_seed, "seed_spread": spread, "wall_s": round(wall, 1),
            "per_fold": {k: float(np.mean(v)) for k, v in sorted(per_fold.items(), key=lambda kv: int(kv[0]))},
        }  # fmt: skip
        seeds_text = ", ".join(f"{s}: {100 * v:.2f}" for s, v in per_seed.items()) or "n/a"
        spread_text = "n/a" if spread["std"] is None else f"{100 * spread['std']:.2f}"
        lines.append(f"| {variant} | {_fmt(stats, 100)} | {stats['n']} | {seeds_text} | {spread_text} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "final_results.md", text)
    atomic_write_text(out / "final_results.json", json.dumps(report, indent=2))
    return text
