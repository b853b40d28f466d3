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


def _study(folder: Path, settings: list[tuple[str, dict, str, list[tuple]]], **extra) -> Path:
    """A study folder as ``audiocls study`` leaves it, by hand: ``(key, setting, state, fits)`` per setting, each fit
    ``(seed, status, validation objective, test/acc, per-class test recall)``."""
    (folder / "trials").mkdir(parents=True)
    identity = {"search_only": {"data.fold": 1, "data.val_fold": 2}}
    (folder / "study.json").write_text(json.dumps({"name": folder.name, "identity": identity}))
    rows = [{"key": key, "setting": setting, "state": state, "n": len(fits)} for key, setting, state, fits in settings]
    (folder / "study_results.json").write_text(json.dumps({"study": folder.name, "monitor": "val/acc",
                                                           "epoch": "final", "rows": rows}))  # fmt: skip
    for key, _, _, fits in settings:
        (folder / "trials" / key).mkdir()
        for seed, status, objective, test, recall in fits:
            tests = {
                "test/acc": test,
                "test/f1_macro": test - 0.01,
                **{f"test/acc_class/{c}": v for c, v in recall.items()},
            }
            result = {"repeat": {"seed_everything": seed}, "command": "audiocls fit ...", "status": status,
                      "objective": objective, "test": tests, "wall_s": 60.0 + 10 * seed}  # fmt: skip
            (folder / "trials" / key / f"seed{seed}").mkdir()
            (folder / "trials" / key / f"seed{seed}" / "study_result.json").write_text(json.dumps(result))
    for name, value in extra.items():
        (folder / name).write_text(json.dumps(value))
    return folder


def test_the_transfer_study_table_shows_validation_and_the_test_fold_beside(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RECORDS", tmp_path / "records")  # never the committed docs/results
    studies = tmp_path / "studies"
    _study(studies / "partial_transfer", [
        ("k1", {"model.reinit_from": 1}, "COMPLETE", [(0, "done", 0.7, 0.75, {}), (1, "done", 0.725, 0.75, {})]),
        ("k0", {"model.freeze_until": 0}, "COMPLETE", [(1, "done", 0.95, 0.9875, {}), (0, "done", 0.975, 0.9625, {})]),
        ("k2", {"model.reinit_from": 2}, "PRUNED", [(0, "done", 0.6, 0.6, {}), (1, "pruned", 0.1, 0.1, {})]),
        ("k5", {"model.freeze_until": 5}, "FAIL", []),
    ])  # fmt: skip
    found = results.read(results.TRANSFER, tmp_path / "runs", studies=studies)
    doc = "\n".join(results.transfer_md(found))
    assert "val/acc % on validation fold 2 (the objective: mean ± std)" in doc
    assert "test/acc % on test fold 1 (not used to choose)" in doc
    assert "| `freeze_until=0` | all | none | **96.25 ± 1.77** | 97.50 / 95.00 | 97.50 ± 1.77 | 65 |" in doc
    assert "| `reinit_from=1` | none | none | **71.25 ± 1.77** | 70.00 / 72.50 | 75.00 ± 0.00 | 65 |" in doc
    assert "| `reinit_from=2` | stem | none | **60.00 ± 0.00** | 60.00 | 60.00 ± 0.00 | 60 |" in doc  # pruned fit out
    assert "| `freeze_until=5` | all | stem..s4 | fail | | | |" in doc
    assert "old runner" not in doc and "5 fits" in doc
    # kept as a record, so a clone without the study folder shows the same table; the plot is the study's
    assert results.read(results.TRANSFER, tmp_path / "runs", studies=tmp_path / "none") == found
    results.transfer_plot(found, tmp_path / "transfer.png")
    assert (tmp_path / "transfer.png").stat().st_size > 10_000


def test_the_ablation_study_tables_name_each_variant_and_split_minority_from_majority_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RECORDS", tmp_path / "records")
    csv_data = {"data": "audiocls.data.folder.CSVDataModule", "data.init_args.manifest": "{manifest}"}
    variants = {"recipe": {}, "ema": {"config": "configs/callbacks/ema.yaml"}, "imbalanced": csv_data}
    here = {**csv_data, "data.init_args.manifest": "/somewhere/imbalanced.csv"}
    full = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    folder = _study(tmp_path / "esc10_ablations", [
        ("ki", here, "COMPLETE", [(0, "done", 0.9, 0.675, {"a": 1.0, "b": 0.5, "c": 0.9, "d": 0.3}),
                                  (1, "done", 0.85, 0.775, {"a": 1.0, "b": 0.7, "c": 0.9, "d": 0.5})]),
        ("ke", {"config": "configs/callbacks/ema.yaml"}, "FAIL", []),
        ("kr", {}, "COMPLETE", [(0, "done", 0.975, 0.9625, full), (1, "done", 0.95, 0.9875, full)]),
    ], **{"ablations.json": {"fold": 1, "val_fold": 2, "minority": ["b", "d"], "variants": variants}})  # fmt: skip
    doc = "\n".join(results.ablations_md(results.read_ablations(folder)))
    assert doc.index("`recipe`") < doc.index("`ema`") < doc.index("`imbalanced`")  # the script's order
    assert "| `recipe` | the shipped recipe | **96.25 ± 1.77** | 97.50 / 95.00 | 97.50 ± 1.77 | 65 |" in doc
    assert "| `ema` | + `--config configs/callbacks/ema.yaml` (EMA of the weights, decay 0.99) | fail | | | |" in doc
    # minority (b, d) test recall: seed 0 (0.5 + 0.3) / 2 = 40 %, seed 1 60 %; majority (a, c): 95 % both
    assert "| **87.50 ± 3.54** | 72.50 ± 7.07 | 71.50 ± 7.07 | 50.00 ± 14.14 | 95.00 ± 0.00 | 40.0 / 60.0 |" in doc


def test_without_a_study_folder_the_committed_old_runner_tables_stay_as_they_are(tmp_path):
    """The committed records of the old runner (test fold compared) render the committed docs/RESULTS.md tables
    line for line, under a heading that says where they came from."""
    page = (ROOT / "docs" / "RESULTS.md").read_text()
    for name, render in ((results.TRANSFER, results.transfer_md), (results.ABLATIONS, results.ablations_md)):
        record = results.read(name, tmp_path / "runs", keep=False, studies=tmp_path / "none")
        assert "runs" in record  # the old runner's record
        lines = render(record)
        assert "(the old runner, compared on the test fold)" in lines[0]
        assert [ln for ln in lines if ln.startswith("|") and ln not in page] == []
    results.transfer_plot(
        results.read(results.TRANSFER, tmp_path / "runs", False, tmp_path / "none"), tmp_path / "untouched.png"
    )  # the committed plot is left as it was made
    assert not (tmp_path / "untouched.png").exists()


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


def test_the_ablations_script_writes_a_study_that_passes_every_check(tmp_path, monkeypatch):
    """benchmarks/esc10_ablations.py on generated ESC-10 data with ``--report``: its study file and manifest pass
    every check of ``audiocls study`` (each variant resolved as a fit config), and no fit runs."""
    import csv

    import yaml

    from tests.test_combinations import _write_esc10

    root = _write_esc10(tmp_path / "ESC-50-master")  # 2 clips per class and fold
    where = importlib.util.spec_from_file_location("esc10_ablations", ROOT / "benchmarks" / "esc10_ablations.py")
    ablations = importlib.util.module_from_spec(where)
    where.loader.exec_module(ablations)
    monkeypatch.setattr(ablations, "KEEP_MINORITY", 1)
    monkeypatch.chdir(tmp_path)  # the script moves to the checkout; this puts the test back where it was
    out = tmp_path / "study"
    assert ablations.main(["--root", str(root), "--out", str(out), "--report"]) == 0
    study = yaml.safe_load((out / "esc10_ablations.yaml").read_text())
    assert study["search_only"] == {"data.fold": 1, "data.val_fold": 2} and study["seeds"] == [0, 1]
    choices = study["space"]["variant"]["choices"]
    assert choices[:2] == [{}, {"config": "configs/callbacks/ema.yaml"}]
    assert choices[4]["data.init_args.manifest"] == str(out / "imbalanced.csv")
    minority = json.loads((out / "ablations.json").read_text())["minority"]
    counts: dict[tuple[str, str], int] = {}
    with (out / "imbalanced.csv").open() as fh:
        for row in csv.DictReader(fh):
            counts[(row["label"], row["fold"])] = counts.get((row["label"], row["fold"]), 0) + 1
    assert len(minority) == 5
    for (label, fold), n in counts.items():  # the test and validation folds stay whole
        assert n == (1 if label in minority and fold not in ("1", "2") else 2), (label, fold)
    assert not list(out.glob("trials/*"))


def test_the_recipe_search_table_shows_each_setting_its_folds_and_the_final_figure_against_the_aim(tmp_path):
    """The recipe search's folder: one row per setting (each searched key a column, the objective per validation
    fold, the test fold beside), then the ``--final`` table and whether the 98 % aim is reached."""
    folder = tmp_path / "studies" / "cpu_recipe_search"
    folder.mkdir(parents=True)
    fits = [{"status": "done", "repeat": {"data.val_fold": 2}, "objective": 0.925},
            {"status": "done", "repeat": {"data.val_fold": 3}, "objective": 0.95}]  # fmt: skip
    rows = [
        {"key": "k1", "setting": {"model.backbone": "regnetx_002", "model.optimizer.init_args.lr": 0.001},
         "state": "COMPLETE",
         "n": 2, "objective": {"mean": 0.9375, "std": 0.0176777, "n": 2}, "test": {"mean": 0.9, "std": 0.0, "n": 2},
         "wall_s": 612.0, "error": None, "fits": fits},
        {"key": "k2", "setting": {"model.backbone": "mobilenetv2_100", "model.optimizer.init_args.lr": 0.0003},
         "state": "PRUNED",
         "n": 0, "objective": {"mean": None, "std": None, "n": 0}, "test": {"mean": None, "std": None, "n": 0},
         "wall_s": 100.0, "error": None, "fits": []},
    ]  # fmt: skip
    (folder / "study_results.json").write_text(json.dumps({"study": "cpu_recipe_search", "monitor": "val/acc",
                                                           "epoch": "final", "rows": rows}))  # fmt: skip
    (folder / "study.json").write_text(json.dumps({"identity": {"search_only": {"data.fold": 1}}}))
    uptime = " 02:42:00 up 3 min,  load average: 0.56, 0.18, 0.06"
    (folder.parent / "cpu_recipe_search.run.json").write_text(json.dumps(
        {"started": "2026-12-05T02:42:00+00:00", "uptime_before": uptime, "uptime_after": uptime, "wall_s": 5400.0,
         "machine": "x86_64"}))  # fmt: skip
    doc = "\n".join(results.recipe_md(results.read_recipe_search(folder)))
    assert "| rank | backbone | lr | state | val/acc % (objective) | per fold | test fold 1 % (not used) |" in doc
    assert "| 1 | regnetx_002 | 0.001 | complete | **93.75 ± 1.77** | val_fold 2: 92.50 / val_fold 3: 95.00 | " \
           "90.00 ± 0.00 | 612 |" in doc  # fmt: skip
    assert "| 2 | mobilenetv2_100 | 0.0003 | pruned | **n/a** |  | n/a | 100 |" in doc
    row = results.recipe_readme_row(results.read_recipe_search(folder))
    assert row == ["| ESC-10, recipe search over 2 settings (1 pruned or cut short) (`audiocls study`, test fold 1 held out) | best on validation: "
                   "backbone regnetx_002, lr 0.001 | val/acc 93.75 ± 1.77 % (validation folds); test fold 1 90.00 ± 0.00 "
                   f"% (not used to choose) | 90.0 min | `{results.RECIPE_COMMAND}` |"]  # fmt: skip
    assert "1 of the 2 settings tried have a figure" in doc
    assert "0.56 / 0.18 / 0.06 before" in doc and "90.0 min in all" in doc and "not measured yet" in doc
    # run by hand (no run record): the fits' own start times, load averages and machine
    (folder.parent / "cpu_recipe_search.run.json").unlink()
    for fit, load in zip(fits, ([1.5, 1.0, 0.5], [3.25, 2.0, 1.0]), strict=True):
        fit.update(started="2026-12-05T03:00:00Z", load_before=load)
    fits[0]["started"] = "2026-12-05T02:58:00Z"
    run = folder / "trials" / "k1" / "val_fold2"
    run.mkdir(parents=True)
    (run / "runinfo.json").write_text(json.dumps({"platform": "Linux-x86_64", "cpus": 2}))
    (folder / "study_results.json").write_text(json.dumps({"study": "cpu_recipe_search", "monitor": "val/acc",
                                                           "epoch": "final", "rows": rows}))  # fmt: skip
    doc = "\n".join(results.recipe_md(results.read_recipe_search(folder)))
    assert "started 2026-12-05T02:58:00Z on Linux-x86_64, 2 CPUs, load average 1.50 to 3.25 (1 minute) at the " \
           "fits' starts, 11.9 min in all" in doc  # fmt: skip

    final = {"chosen": rows[0]["setting"], "variants": {
        "pretrained": {"all": {"mean": 0.975, "std": 0.02, "n": 10}, "per_seed": {"0": 0.98, "1": 0.97},
                       "seed_spread": {"mean": 0.975, "std": 0.0070711, "n": 2}},
        "random": {"all": {"mean": None, "std": None, "n": 0}, "per_seed": {}, "seed_spread": {"mean": None,
                                                                                               "std": None}}}}  # fmt: skip
    (folder / "final_results.json").write_text(json.dumps(final))
    doc = "\n".join(results.recipe_md(results.read_recipe_search(folder)))
    assert "| pretrained | **97.50 ± 2.00** | 10 | seed 0: 98.00, seed 1: 97.00 | 0.71 | n/a |" in doc
    assert "| random | **n/a** | 0 | not run yet | n/a | n/a |" in doc
    assert "is not reached (97.50 ± 2.00 % over 10 fold runs)" in doc
    final["variants"]["pretrained"]["all"]["mean"] = 0.98
    (folder / "final_results.json").write_text(json.dumps(final))
    assert "is reached (98.00 ± 2.00 %" in "\n".join(results.recipe_md(results.read_recipe_search(folder)))
    # the final cv runs: when, where, under what load (each fold's runinfo); how long and each fold's mean over seeds
    # (the study's final report, from each cv's results)
    final["variants"]["pretrained"].update(wall_s=1200.0, per_fold={"2": 0.95, "10": 0.925})
    (folder / "final_results.json").write_text(json.dumps(final))
    for seed, (started, load) in enumerate((("2026-12-05T07:04:00+0000", [0.5, 1, 1]),
                                            ("2026-12-05T07:20:00+0000", [2.25, 2, 1]))):  # fmt: skip
        cv = folder / "final" / f"pretrained-seed{seed}"
        (cv / "fold_1").mkdir(parents=True)
        earlier = [{"started": "2026-12-05T07:01:03+0000"}] if seed == 0 else []  # a record rewritten (resume, test)
        (cv / "fold_1" / "runinfo.json").write_text(json.dumps({"started": started, "platform": "Linux-x86_64",
                                                                "cpus": 2, "load_average": load,
                                                                "earlier": earlier}))  # fmt: skip
    (folder / "final" / "random-seed0" / "fold_1").mkdir(parents=True)  # a fold from before runs recorded the load
    (folder / "final" / "random-seed0" / "fold_1" / "runinfo.json").write_text(
        json.dumps({"started": "2026-12-05T08:00"})
    )
    r = results.read_recipe_search(folder)
    assert "The 3 fold fits started 2026-12-05T07:01:03+0000 on Linux-x86_64, 2 CPUs, 20.0 min in all; load " \
           "average 0.50 to 2.25 (1 minute) at the starts of 2 of 3 folds." in "\n".join(results.recipe_md(r))  # fmt: skip
    assert "| 0.71 | 2: 95.00 / 10: 92.50 |" in "\n".join(results.recipe_md(r))  # folds in order, mean over seeds
    rows = results.recipe_readme_row(r)
    assert rows[1:] == ["| ESC-10, 5 official folds, the recipe chosen on validation, 2 seeds (pretrained) | regnetx_002, "
                        "ImageNet weights | 98.00 ± 2.00 % over 10 fold runs; seed-to-seed std of the 5-fold mean 0.71 | "
                        f"20.0 min (all variants) | `{results.RECIPE_COMMAND} --final` |"]  # fmt: skip
