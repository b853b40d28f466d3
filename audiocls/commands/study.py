"""``audiocls study``: experiments over settings, seeds and folds on Optuna; objectives on validation data only.

    audiocls study --config configs/studies/partial_transfer.yaml --data.root ~/data/ESC-50-master
    audiocls study --config configs/studies/cpu_recipe_search.yaml --data.root DIR --workers 2
    audiocls study --config configs/studies/cpu_recipe_search.yaml --data.root DIR --final

A study file (:mod:`~audiocls.commands.study_spec`) names a base stack of fit configs, a search space over any
config keys, repeat axes (seeds, folds, ...) and the objective: the task's validation key at the final or best
epoch, averaged over a setting's repeats. Each fit is ``audiocls fit`` in its own process and folder (the command
is recorded with it). Any other argument is a fit override for every fit (``--data.root DIR``).

The study folder (``--out``, default ``runs/studies/<name>``) holds the Optuna storage (a journal file, or
``--storage`` an RDB URL), the fits under ``trials/``, and the report (``study_results.{md,csv,json}``, a PNG per
searched axis). Running the same command again resumes: finished fits are not redone, a trial cut short (Ctrl-C,
a killed process) is queued again. ``--workers N`` runs N trials at once; ``--launcher submitit`` runs the workers
as cluster jobs sharing the storage (a journal on a shared filesystem, or an RDB URL).

``--final`` runs the best setting (on validation) as ``audiocls cv`` on every test fold, for each seed and variant
of the file's ``final:`` block, once, and writes ``final_results.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from audiocls.commands.cv_records import config_hash
from audiocls.commands.parser import command_parser
from audiocls.commands.study_fit import make_pruner, open_storage
from audiocls.commands.study_report import plot_axes, setting_rows, write_final_report, write_study_report
from audiocls.commands.study_run import Runner, interrupt_on_sigterm, retry_interrupted, run_workers
from audiocls.commands.study_spec import StudySpec, arg, load_spec
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_text

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "study",
        "Run a study (configs/studies/*.yaml) on Optuna: settings x seeds x folds, validation objective, resumable.",
        epilog="Every other argument is passed to each 'audiocls fit' (e.g. --data.root ~/data/ESC-50-master).",
    )
    p.add_argument("--config", required=True, help="the study file, e.g. configs/studies/partial_transfer.yaml")
    p.add_argument("--out", default=None, help="study folder (default: runs/studies/<study name>)")
    p.add_argument("--workers", type=int, default=1, help="trials run at once (each one fit process at a time)")
    p.add_argument("--storage", default=None, help="Optuna storage: an RDB URL (sqlite:///s.db) or a journal file "
                   "(default: OUT/optuna.journal)")  # fmt: skip
    p.add_argument("--sampler", default=None, help="override the file's sampler: grid, tpe or random")
    p.add_argument("--n_trials", type=int, default=None, help="override the file's n_trials")
    p.add_argument("--pruner", default=None, help="override the file's pruner: none or median")
    p.add_argument("--seeds", default=None, help="override the file's seeds, comma-separated: 0,1,2")
    p.add_argument("--folds", default=None, help="override the file's folds, comma-separated: 1,2")
    p.add_argument("--retry_failed", action="store_true", help="queue the failed settings again")
    p.add_argument("--report", action="store_true", help="only write the report of what has run")
    p.add_argument("--final", action="store_true", help="run the best setting as cv on the test folds (final:)")
    p.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: worker threads here; submitit: --workers jobs through submitit")  # fmt: skip
    p.add_argument("--cluster", choices=("auto", "slurm", "local"), default="auto", help="submitit's executor")
    p.add_argument("--timeout_min", type=int, default=24 * 60, help="submitit: time limit of each worker job")
    p.add_argument("--gpus_per_job", type=int, default=0, help="submitit: GPUs of each worker job")
    p.add_argument("--cpus_per_job", type=int, default=4, help="submitit: CPU cores of each worker job")
    p.add_argument("--slurm_partition", default=None, help="submitit: the SLURM partition")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a submitit job: run trials only
    return p


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag}={text!r} must be comma-separated integers, e.g. {flag}=0,1,2") from None


def check_study(spec: StudySpec, fit_args: list[str]) -> tuple[dict, object, int]:
    """Resolve the base config and try every searched key and repeat value on it, before any trial starts.

    Returns ``(resolved base config, the task, number of folds)``; raises one :class:`ConfigError` line per mistake.
    """
    from audiocls.models.task import get_task
    from audiocls.training.cli import build_datamodule, resolve_config

    search = [arg(k, v) for k, v in spec.search_only.items()]

    def resolve(extra: list[str], what: str) -> dict:
        try:
            return resolve_config([*fit_args, *search, *extra])
        except (ConfigError, SystemExit, ValueError, TypeError) as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{spec.path}: {what} is not a valid fit setting ({text}); fix it in the study "
                              "file (keys as typed after --, e.g. model.optimizer.init_args.lr)") from None  # fmt: skip

    cfg = resolve([], "the base (config: and search_only:)")
    for axis in spec.axes:
        for probe in axis.probes():
            resolve([arg(k, v) for k, v in probe.items()], f"space.{axis.name}: {json.dumps(probe)}")
    for key, values in spec.repeats:
        if key != "data.fold":
            for v in values:
                resolve([arg(key, v)], f"{key}: {v!r}")
    dm = build_datamodule(cfg)
    folds = range(1, dm.num_folds + 1)
    for key, values in [*spec.repeats, *((k, [v]) for k, v in spec.search_only.items())]:
        if key in ("data.fold", "data.val_fold"):
            bad = [v for v in values if v not in folds]
            if bad:
                raise ConfigError(f"{spec.path}: {key} {bad[0]!r} is not a fold of {type(dm).__name__}; its folds are "
                                  f"1..{dm.num_folds}")  # fmt: skip
    return cfg, get_task(dm.task), dm.num_folds


def _check_folder(out: Path, spec: StudySpec, identity: dict) -> None:
    record = out / "study.json"
    if record.is_file():
        old = json.loads(record.read_text())
        if old.get("identity") != identity:
            changed = sorted(k for k in identity if old.get("identity", {}).get(k) != identity[k])
            raise ConfigError(f"{out} holds study '{old.get('name')}' with another {', '.join(changed)}; use another "
                              "--out, or delete the folder to start over")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"name": spec.name, "file": str(spec.path), "identity": identity}, indent=2))


def _grid_sampler():
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, without its ``study.stop()`` after the last point: that works only inside
        ``study.optimize``, and the study runs on ask/tell (:meth:`Runner.next_trial` stops when every point has
        started)."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return Grid


def _open_study(spec: StudySpec, storage: str, direction: str, identity: dict):
    import optuna

    try:
        backend = open_storage(storage)
    except Exception as err:  # noqa: BLE001 - any driver error is one line naming the storage
        raise ConfigError(f"--storage {storage}: cannot be opened ({str(err).splitlines()[0]}); give an RDB URL "
                          "such as sqlite:///study.db, or a journal file path on a filesystem every worker sees") from None  # fmt: skip
    if spec.sampler == "grid":
        sampler = _grid_sampler()({a.name: [a.label(c) for c in a.choices] for a in spec.axes}, seed=spec.sampler_seed)
    elif spec.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed, n_startup_trials=max(3, spec.n_trials // 3))
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    pruner = make_pruner(spec.pruner)
    study = optuna.create_study(study_name=spec.name, storage=backend, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)  # fmt: skip
    stored = study.user_attrs.get("identity")
    digest = config_hash(identity)
    if stored is None:
        study.set_user_attr("identity", digest)
        for setting in spec.first:  # tried first, once
            study.enqueue_trial({k: a.label(setting[k]) for k, a in ((a.name, a) for a in spec.axes)})
    elif stored != digest:
        raise ConfigError(f"--storage {storage} holds a study named '{spec.name}' with another space or settings; "
                          "give the study another name: (name: in the file) or another storage")  # fmt: skip
    return study


def _submit_workers(opts, argv: list[str], out: Path) -> None:
    from audiocls.commands.cv_launch import make_executor, run_fold_job

    executor = make_executor(out / "submitit", opts.cluster, timeout_min=opts.timeout_min, gpus=opts.gpus_per_job,
                             cpus=opts.cpus_per_job, partition=opts.slurm_partition)  # fmt: skip
    cmd = [sys.executable, "-m", "audiocls.cli", "study", *argv, "--worker", "--launcher=local", "--workers=1"]
    jobs = [executor.submit(run_fold_job, cmd, str(out / f"worker_{i}.log")) for i in range(opts.workers)]
    log.info("study: %d worker jobs submitted (%s), logs %s", len(jobs), jobs[0].job_id, out / "worker_*.log")
    try:
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - a lost job: its trial is retried on the next run
                log.error("worker job %s failed: %s", job.job_id, str(err).strip().splitlines()[-1:])
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise


def run_final(spec: StudySpec, rows: list[dict], fit_args: list[str], out: Path, key: str, run: bool = True) -> str:
    """The best completed setting as ``audiocls cv`` for each variant and seed of ``final:``; its report (of the cv
    runs finished so far, running none, when not ``run``)."""
    best = next((r for r in rows if r["state"] == "COMPLETE"), None)
    if best is None:
        raise ConfigError(f"--final: no setting of study {spec.name} has completed yet; run the study first")
    variants = spec.final.get("variants") or {"chosen": {}}
    seeds = spec.final.get("seeds") or [0]
    folds = spec.final.get("folds")
    runs: dict[str, dict[int, Path]] = {}
    for variant, extra in variants.items():
        for seed in seeds:
            folder = out / "final" / f"{variant}-seed{seed}"
            cmd = ["cv", *fit_args, *(arg(k, v) for k, v in {**best["setting"], **(extra or {})}.items())]
            cmd += [f"--seed_everything={seed}", f"--out={folder}"] + ([f"--folds={','.join(map(str, folds))}"]
                                                                       if folds else [])  # fmt: skip
            runs.setdefault(variant, {})[seed] = folder
            if not run:
                continue
            log.info("final: %s seed %d: audiocls %s", variant, seed, " ".join(cmd))
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / "cv.log").open("a") as fh:
                fh.write(f"$ audiocls {' '.join(cmd)}\n")
                fh.flush()
                code = subprocess.run([sys.executable, "-m", "audiocls.cli", *cmd], stdout=fh,
                                      stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode  # fmt: skip
            if code == 130:
                raise KeyboardInterrupt
            if code:
                log.error("final: %s seed %d: cv exited %d; see %s", variant, seed, code, folder / "cv.log")
    return write_final_report(out, spec, best["setting"], runs, key)


def main(argv: list[str]) -> int:
    """``audiocls study``; 0 when the study (and ``--final``) ran, 1 when a setting failed, 130 on Ctrl-C."""
    opts, overrides = build_parser().parse_known_args(argv)
    if opts.workers < 1:
        raise ConfigError(f"--workers={opts.workers} must be at least 1")
    spec = load_spec(Path(opts.config), sampler=opts.sampler, n_trials=opts.n_trials, pruner=opts.pruner,
                     seeds=_int_list(opts.seeds, "--seeds"), folds=_int_list(opts.folds, "--folds"))  # fmt: skip
    fit_args = [a for c in spec.config for a in ("--config", c)] + overrides
    cfg, task, _ = check_study(spec, fit_args)
    monitor = spec.metric or task.monitor
    mode = task.mode if monitor == task.monitor else ("min" if "loss" in monitor else "max")
    out = Path(opts.out or Path("runs") / "studies" / spec.name).expanduser().resolve()
    identity = json.loads(json.dumps({**spec.identity(), "base": config_hash(cfg), "overrides": overrides}))
    if not opts.worker:
        _check_folder(out, spec, identity)
    storage = opts.storage or str(out / "optuna.journal")
    study = _open_study(spec, storage, "maximize" if mode == "max" else "minimize", identity)
    runner = Runner(spec=spec, out=out, study=study, storage=storage, fit_args=fit_args, cfg=cfg, monitor=monitor,
                    mode=mode, workers=opts.workers if opts.launcher == "local" else 1)  # fmt: skip
    finished = True
    interrupt_on_sigterm()
    if opts.worker:
        return 0 if run_workers(runner) else 130
    if not opts.report:
        queued = retry_interrupted(study, opts.retry_failed)
        if queued:
            log.info("study: %d setting(s) cut short before are queued again", queued)
        log.info("study %s: writing to %s", spec.name, out)
        try:
            if opts.launcher == "submitit":
                _submit_workers(opts, argv, out)
            else:
                finished = run_workers(runner)
        except KeyboardInterrupt:
            finished = False
    rows = setting_rows(study, spec, out, monitor, mode)
    scale = 100.0 if monitor == task.monitor else 1.0
    print(write_study_report(out, spec, rows, monitor, scale))
    plot_axes(out, spec, rows, monitor, scale)
    if not finished:
        log.warning("interrupted: finished fits are kept; run the same command again to resume")
        return 130
    if opts.final:
        try:
            print(run_final(spec, rows, fit_args, out, task.headline, run=not opts.report))
        except KeyboardInterrupt:
            log.warning("interrupted: finished folds are kept; run the same command again to resume")
            return 130
    return 1 if any(r["state"] == "FAIL" for r in rows) else 0
