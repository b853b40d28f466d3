"""``audiocls cv``: every fold of a dataset, each one ``fit`` in its own process, resumable, with an honest report.

    audiocls cv --config configs/esc50.yaml --data.root ~/data/ESC-50 [--folds 1,3] [--parallel 2] [--out DIR]

Any other argument is a ``fit`` override. The user's config and overrides are resolved once into
``DIR/cv_config.yaml``, which every fold runs with ``--data.fold K``; its hash (ignoring the settings in
:data:`HASH_IGNORED`, which do not change a result) is recorded in ``DIR/cv.json`` and in every fold's result,
and a directory made with another config is refused. ``DIR/fold_K/`` holds one run: ``config.yaml``,
``checkpoints/{last,best}.ckpt``, ``metrics.json``, ``fit.log``, ``test_each_epoch.json`` and
``predictions.npz`` (from :class:`TestFoldEachEpoch`), and ``result.json``, written last: a fold is complete
when its ``result.json`` is valid and carries the current hash. An incomplete fold resumes from its
``last.ckpt``. The report (:mod:`audiocls.commands.cv_report`) gives the final epoch's test-fold figure of the task
(accuracy, or mAP: the honest figure) and, labelled, the best epoch's (the paper's protocol).

This module is the driver; the fold callback is :mod:`~audiocls.commands.cv_callback`, the records (config hash,
``result.json``) :mod:`~audiocls.commands.cv_records`, the launchers :mod:`~audiocls.commands.cv_launch`, the
curves :mod:`~audiocls.commands.cv_plots`.

``--launcher submitit`` submits one job per fold through submitit instead (SLURM where ``sbatch`` exists,
``--cluster local`` for local processes), each job running the same fold command, so the resume rules are the
same; the driver waits for the jobs and writes the same report. Job files are under ``DIR/submitit/``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from audiocls.commands.cv_callback import TestFoldEachEpoch, gather_fold
from audiocls.commands.cv_launch import make_executor, run_folds, submit_folds
from audiocls.commands.cv_plots import plot_folds
from audiocls.commands.cv_records import HASH_IGNORED, check_dir, collect, config_hash, fold_done
from audiocls.commands.cv_report import EPOCHS, LOG, PREDICTIONS, RESULT, write_json, write_report
from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_text
from audiocls.models.task import get_task
from audiocls.training.cli import build_datamodule, resolve_config

# TestFoldEachEpoch stays reachable here: configs written before the split name audiocls.commands.cv.TestFoldEachEpoch
__all__ = [
    "main", "build_parser", "TestFoldEachEpoch", "gather_fold", "config_hash", "collect", "resolve_config",
    "plot_folds", "HASH_IGNORED", "EPOCHS", "LOG", "PREDICTIONS", "RESULT",
]  # fmt: skip

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "cv",
        "Run fit + test on every fold, each in its own process; resumable; writes cv_results.{json,md}.",
        epilog="Every other argument is passed to 'audiocls fit' (e.g. --data.root ~/data/ESC-50 --trainer.max_epochs 5).",
    )
    p.add_argument("--config", action="append", default=[], help="fit config file(s), as for 'audiocls fit'")
    p.add_argument("--folds", default=None, help="comma-separated fold ids (default: every fold of the dataset)")
    p.add_argument("--parallel", type=int, default=1, help="folds run at once (one GPU each when there are GPUs)")
    p.add_argument(
        "--out", default=None, help="cv directory (default: <trainer.default_root_dir, runs>/<config name>-cv)"
    )
    p.add_argument("--name", default=None, help="cv name, the W&B group (default: the --out folder's name)")
    p.add_argument(
        "--launcher", choices=("local", "submitit"), default="local",
        help="local: fold processes on this machine (default); submitit: one job per fold through submitit",
    )  # fmt: skip
    p.add_argument(
        "--cluster", choices=("auto", "slurm", "local"), default="auto",
        help="submitit's executor: auto = SLURM where sbatch exists, else local processes",
    )  # fmt: skip
    p.add_argument("--timeout_min", type=int, default=24 * 60, help="submitit: time limit of each fold job")
    p.add_argument("--gpus_per_job", type=int, default=0, help="submitit: GPUs of each fold job (SLURM)")
    p.add_argument("--cpus_per_job", type=int, default=4, help="submitit: CPU cores of each fold job")
    p.add_argument("--slurm_partition", default=None, help="submitit: the SLURM partition")
    return p


def main(argv: list[str]) -> int:
    """``audiocls cv``; returns 0 when every fold is done, 1 when some failed, 130 on Ctrl-C."""
    opts, overrides = build_parser().parse_known_args(argv)
    if opts.parallel < 1:
        raise ConfigError(f"--parallel={opts.parallel} must be at least 1")
    fit_args = [a for c in opts.config for a in ("--config", c)] + overrides
    cfg = resolve_config(fit_args)
    if cfg.get("data", {}).get("init_args", {}).get("val_fold") is not None:
        raise ConfigError("data.val_fold is set, and it would be the held-out fold in one of the folds; use null")
    dm = build_datamodule(cfg)
    fold_ids = list(range(1, dm.num_folds + 1))
    if opts.folds:
        try:
            folds = [int(f) for f in opts.folds.split(",") if f.strip()]
        except ValueError:
            raise ConfigError(f"--folds={opts.folds!r} must be comma-separated fold ids, e.g. 1,3") from None
        bad = [f for f in folds if f not in fold_ids]
        if bad:
            raise ConfigError(f"--folds: {bad} not folds of {type(dm).__name__}; choose among {fold_ids}")
    else:
        folds = fold_ids
    stem = Path(opts.config[-1]).stem if opts.config else "audiocls"
    root = cfg.get("trainer", {}).get("default_root_dir") or "runs"  # where 'audiocls fit' would write
    out = Path(opts.out or Path(root) / f"{stem}-cv").expanduser().resolve()
    name = opts.name or out.name
    log.info("cv: writing to %s", out)
    cfg_hash = config_hash(cfg)
    check_dir(out, cfg, cfg_hash)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cv_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    write_json(out / "cv.json", {"config_hash": cfg_hash, "name": name, "datamodule": cfg["data"]["class_path"]})

    results: dict[int, dict] = {}
    todo = []
    for fold in folds:
        done = fold_done(out / f"fold_{fold}", cfg_hash)
        if done:
            log.info("fold %d: complete, skipped (%s)", fold, out / f"fold_{fold}" / RESULT)
            results[fold] = done
        else:
            todo.append(fold)
    interrupted = False
    try:
        if opts.launcher == "submitit" and todo:
            executor = make_executor(
                out / "submitit", opts.cluster, timeout_min=opts.timeout_min, gpus=opts.gpus_per_job,
                cpus=opts.cpus_per_job, partition=opts.slurm_partition,
            )  # fmt: skip
            submit_folds(cfg, cfg_hash, out, name, todo, executor, results)
        else:
            run_folds(cfg, cfg_hash, out, name, todo, opts.parallel, results)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: completed folds are kept; run the same command again to resume")
    for fold in folds:
        results.setdefault(fold, {"fold": fold, "status": "not run"})
    report = write_report(out, name, cfg_hash, [results[f] for f in folds], fold_ids, get_task(dm.task))
    plot_folds(out, folds, name, dm.task)
    print(report)
    if interrupted:
        return 130
    return 0 if all(r["status"] == "done" for r in results.values()) else 1
