"""benchmarks/results.py reads the run folders and writes the figures it finds, between its markers only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results", ROOT / "benchmarks" / "results.py")
results = importlib.util.module_from_spec(spec)
sys.modules["results"] = results  # dataclasses look their module up there
spec.loader.exec_module(results)


def _cv(runs: Path, name: str, accs: list[float]) -> None:
    folds = [
        {"fold": k + 1, "status": "done", "final_acc": a, "best_epoch_acc": a + 0.0125, "best_epoch": 7, "epochs": 30,
         "macro_f1": a - 0.01, "wall_s": 200.0}
        for k, a in enumerate(accs)
    ]  # fmt: skip
    mean = sum(accs) / len(accs)
    summary = {k: {"mean": mean + d, "std": 0.0125, "n": len(accs)} for k, d in
               (("final_acc", 0.0), ("best_epoch_acc", 0.0125), ("macro_f1", -0.01))}  # fmt: skip
    (runs / name).mkdir(parents=True)
    (runs / name / "cv_results.json").write_text(json.dumps({"summary": summary, "folds": folds, "all_folds": True}))
    uptime = " 10:00:00 up 1 day,  load average: 1.05, 0.98, 0.50"
    run = {"wall_s": 1100.0, "uptime_before": uptime, "uptime_after": uptime, "started": "2026-12-02T06:40:00+00:00"}
    (runs / f"{name}.run.json").write_text(json.dumps(run))


def test_tables_carry_the_run_folders_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RECORDS", tmp_path / "records")  # never the committed docs/results
    runs = tmp_path / "runs"
    _cv(runs, "esc10_cv", [0.9875, 0.975, 1.0, 0.9625, 0.9875])
    _cv(runs, "esc10_cv_random", [0.75, 0.7, 0.8, 0.775, 0.725])
    (runs / "fsdd" / "run").mkdir(parents=True)
    (runs / "fsdd" / "run" / "metrics.json").write_text(json.dumps({"test/acc": 0.99333, "test/loss": 0.5}))
    found = {n: r for n in results.EXPERIMENTS if (r := results.read(n, runs)) is not None}
    assert sorted(found) == ["esc10_cv", "esc10_cv_random", "fsdd"]
    # the figures are kept as records, so a clone without the run folders reads the same ones
    assert sorted(p.stem for p in (tmp_path / "records").glob("*.json")) == ["esc10_cv", "esc10_cv_random", "fsdd"]
    assert results.read("fsdd", tmp_path / "no-runs") == found["fsdd"]
    assert results.read("demo", tmp_path / "no-runs") is None
    readme = "\n".join(results.readme_rows(found))
    doc = "\n".join(results.results_md(found))
    assert "98.25 ± 1.25" in readme and "99.33 %" in readme and "18.3 min" in readme
    assert "| 4 | 96.25 | 97.50 | 7 of 30 |" in doc and "75.00 ± 1.25" in doc and "1.05 / 0.98 / 0.50" in doc
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{results.BEGIN}\nold figure\n{results.END}\noutro\n")
    assert results.replace_block(page, ["new figure"])
    assert page.read_text() == f"intro\n{results.BEGIN}\nnew figure\n{results.END}\noutro\n"
    (tmp_path / "plain.md").write_text("no markers")
    assert (
        not results.replace_block(tmp_path / "plain.md", ["x"]) and (tmp_path / "plain.md").read_text() == "no markers"
    )


def _ablation_run(root: Path, variant: str, seed: int, recall: dict[str, float]) -> None:
    name = f"{variant}-seed{seed}"
    (root / name / "run").mkdir(parents=True)
    acc = sum(recall.values()) / len(recall)
    metrics = {"test/acc": acc, "test/f1_macro": acc - 0.01, **{f"test/acc_class/{c}": v for c, v in recall.items()}}
    (root / name / "run" / "metrics.json").write_text(json.dumps(metrics))
    rec = {"variant": variant, "seed": seed, "returncode": 0, "wall_s": 90.0, "started": f"2026-12-02T14:0{seed}:00"}
    (root / f"{name}.run.json").write_text(json.dumps({**rec, "uptime_before": "load average: 1.50, 1.00, 0.50"}))


def test_ablation_tables_average_seeds_and_split_minority_from_majority_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RECORDS", tmp_path / "records")  # no committed runs mixed in
    root = tmp_path / "esc10_ablations"
    root.mkdir()
    (root / "study.json").write_text(json.dumps({"fold": 1, "minority": ["b", "d"]}))
    _ablation_run(root, "recipe", 0, {"a": 1.0, "b": 0.9, "c": 1.0, "d": 0.9})
    _ablation_run(root, "recipe", 1, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.9})
    _ablation_run(root, "imbalanced", 0, {"a": 1.0, "b": 0.5, "c": 0.9, "d": 0.3})
    _ablation_run(root, "imbalanced", 1, {"a": 1.0, "b": 0.7, "c": 0.9, "d": 0.5})
    (root / "ema-seed0.run.json").write_text(json.dumps({"variant": "ema", "seed": 0, "returncode": 1}))  # failed
    found = results.read_ablations(root)
    assert sorted((r["variant"], r["seed"]) for r in found["runs"]) == [
        ("imbalanced", 0), ("imbalanced", 1), ("recipe", 0), ("recipe", 1)
    ]  # fmt: skip
    doc = "\n".join(results.ablations_md(found))
    assert "| `recipe` | the shipped recipe | **96.25 ± 1.77** | 95.00 / 97.50 | 90 |" in doc
    assert "`ema`" not in doc  # a failed run has no figures
    # minority (b, d) recall: seed 0 (0.5 + 0.3) / 2 = 40 %, seed 1 60 %; majority (a, c): 95 % both
    assert "| **50.00 ± 14.14** | 95.00 ± 0.00 | 40.0 / 60.0 |" in doc


def test_ablation_runs_recorded_earlier_stay_when_a_session_adds_seeds(tmp_path, monkeypatch):
    """The committed record keeps its runs; a run folder holding only new seeds adds to it (the folder wins on a
    run in both)."""
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(results, "RECORDS", records)
    old = tmp_path / "earlier" / "esc10_ablations"
    old.mkdir(parents=True)
    (old / "study.json").write_text(json.dumps({"fold": 1, "minority": ["b"]}))
    _ablation_run(old, "recipe", 0, {"a": 1.0, "b": 0.5})
    _ablation_run(old, "ema", 0, {"a": 1.0, "b": 1.0})
    (records / "esc10_ablations.json").write_text(json.dumps(results.read_ablations(old)))
    new = tmp_path / "now" / "esc10_ablations"
    new.mkdir(parents=True)
    _ablation_run(new, "recipe", 0, {"a": 1.0, "b": 1.0})  # rerun: replaces the recorded one
    _ablation_run(new, "recipe", 1, {"a": 0.5, "b": 1.0})
    found = results.read_ablations(new)
    accs = {(r["variant"], r["seed"]): r["acc"] for r in found["runs"]}
    assert accs == {("recipe", 0): 1.0, ("recipe", 1): 0.75, ("ema", 0): 1.0}
    assert found["minority"] == ["b"]  # from the record, as the new folder has no study.json


def test_multilabel_experiments_show_map_next_to_the_baseline(tmp_path, monkeypatch):
    """The multi-label experiments, read from a cv report written by the real report code and fits' metrics."""
    from tests.test_cv_multilabel import _fake_cv

    monkeypatch.setattr(results, "RECORDS", tmp_path / "records")
    cv_args = ("cv", "--config", "configs/esc10_mixtures.yaml")
    fit_args = ("fit", "--config", "configs/esc10_mixtures.yaml", "--data.fold", "1")
    monkeypatch.setitem(results.EXPERIMENTS, "mixtures_cv", results.Experiment("mixtures cv", "cv", cv_args, "x"))
    for name, extra in (("esc10_mixtures", ()), ("esc10_mixtures_random", ("--model", "configs/model/random.yaml"))):
        monkeypatch.setitem(results.EXPERIMENTS, name, results.Experiment(name, "fit", fit_args + extra, "y"))
    assert "demo_multilabel" in results.EXPERIMENTS
    runs = tmp_path / "runs"
    _fake_cv(runs / "mixtures_cv", seed=0, signal=2.0)
    for name, m in (("demo_multilabel", 0.8125), ("esc10_mixtures", 0.7), ("esc10_mixtures_random", 0.4)):
        (runs / name / "run").mkdir(parents=True)
        metrics = {"test/mAP": m, "test/mAP_baseline": 0.19, "test/f1_micro": 0.7, "test/f1_macro": 0.6}
        (runs / name / "run" / "metrics.json").write_text(json.dumps(metrics))
    names = ("demo_multilabel", "mixtures_cv", "esc10_mixtures", "esc10_mixtures_random")
    found = {n: results.read(n, runs) for n in names}
    report = json.loads((runs / "mixtures_cv" / "cv_results.json").read_text())
    mean = report["summary"]["final_mAP"]
    readme, doc = "\n".join(results.readme_rows(found)), "\n".join(results.results_md(found))
    assert "mAP 81.25 % (label-frequency baseline 19.00 %)" in readme
    assert f"mAP {100 * mean['mean']:.2f} ± {100 * mean['std']:.2f} %" in readme
    assert "ImageNet-pretrained vs random initialisation (ESC-10 mixtures, fold 1" in doc
    assert "| ImageNet (regnetx_002 weights file) | **70.00** |" in doc and "| random | **40.00** |" in doc
    fold1 = report["folds"][0]
    assert f"| 1 | {100 * fold1['final_mAP']:.2f} | 99.00 | 1 of 2 |" in doc
