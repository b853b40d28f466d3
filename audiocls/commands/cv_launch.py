"""How ``audiocls cv`` runs its folds: each one a ``fit`` process with the fold's arguments, launched on this
machine (``parallel`` at a time, one GPU each where there are GPUs) or as submitit jobs; both fill the same
results and share the resume rules (a fold with a ``last.ckpt`` resumes from it)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from audiocls.commands.cv_records import finish
from audiocls.commands.cv_report import LOG
from audiocls.errors import ConfigError

__all__ = ["logger_args", "fold_command", "run_fold_job", "make_executor", "submit_folds", "run_folds"]

log = logging.getLogger(__name__)

#: the class path of the callback every fold runs with
CALLBACK = "audiocls.commands.cv_callback.TestFoldEachEpoch"


def logger_args(cfg: dict, run_dir: Path, run_name: str, group: str) -> list[str]:
    """Arguments that put the config's logger's files in ``run_dir`` (CSV, TensorBoard: ``log_dir`` = ``run_dir``)
    or, for W&B, name the run ``run_name`` in the group ``group`` (a cv's folds, a study's fits)."""
    logger = cfg.get("trainer", {}).get("logger")
    path = logger.get("class_path", "") if isinstance(logger, dict) else ""
    pre = "--trainer.logger.init_args"
    if path.endswith(("CSVLogger", "TensorBoardLogger")):  # log_dir = save_dir/name/version
        return [f"{pre}.save_dir={run_dir.parent}", f"{pre}.name=", f"{pre}.version={run_dir.name}"]
    if path.endswith("WandbLogger"):
        return [f"{pre}.save_dir={run_dir}", f"{pre}.name={run_name}", f"--trainer.logger.dict_kwargs.group={group}"]
    return []


def fold_command(cfg: dict, out: Path, name: str, fold: int, devices_one: bool) -> list[str]:
    fold_dir = out / f"fold_{fold}"
    callback = {"class_path": CALLBACK, "init_args": {"dirpath": str(fold_dir)}}
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(out / "cv_config.yaml")]
    cmd += [f"--data.fold={fold}", "--data.validate_test_fold=true", f"--trainer.default_root_dir={fold_dir}"]
    cmd += ["--test_after_fit=true"]
    cmd += [f"--checkpoint.dirpath={fold_dir / 'checkpoints'}", f"--trainer.callbacks+={json.dumps(callback)}"]
    cmd += logger_args(cfg, fold_dir, f"{name}-fold{fold}", name)
    if devices_one:
        cmd.append("--trainer.devices=1")
    last = fold_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        cmd.append(f"--ckpt_path={last}")
    return cmd


def run_fold_job(cmd: list[str], log_path: str) -> int:
    """One fold's ``fit`` process, its output appended to ``log_path``; the exit code (a submitit job's body)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode


def make_executor(folder: Path, cluster: str, *, timeout_min: int, gpus: int, cpus: int, partition: str | None):
    """submitit's ``AutoExecutor`` (``cluster``: auto = SLURM where ``sbatch`` exists, else local processes)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher=submitit needs submitit: pip install 'audiocls[cluster]'") from None
    executor = submitit.AutoExecutor(folder=folder, cluster=None if cluster == "auto" else cluster)
    params = dict(timeout_min=timeout_min, nodes=1, tasks_per_node=1, cpus_per_task=cpus, name="audiocls-cv")
    if gpus:
        params["gpus_per_node"] = gpus
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    return executor


def submit_folds(cfg: dict, cfg_hash: str, out: Path, name: str, folds: list[int], executor, results: dict) -> None:
    """Submit one job per fold through submitit and wait for them; fills ``results`` as :func:`run_folds` does.

    The same fold command as the local launcher (so the same resume rules: a fold with a ``last.ckpt`` resumes
    from it, a complete fold is never submitted). Ctrl-C cancels the jobs still queued or running.
    """
    jobs = {}
    for fold in folds:
        fold_dir = out / f"fold_{fold}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        cmd = fold_command(cfg, out, name, fold, devices_one=False)
        resumed = any(a.startswith("--ckpt_path=") for a in cmd)
        job = executor.submit(run_fold_job, cmd, str(fold_dir / LOG))
        jobs[fold] = (job, time.monotonic(), resumed)
        log.info(
            "fold %d: submitted job %s%s, log %s", fold, job.job_id, " (resuming)" if resumed else "", fold_dir / LOG
        )
    try:
        for fold, (job, t0, resumed) in jobs.items():
            try:
                code = job.result()
            except Exception as err:  # the job itself failed (killed, timed out, node lost): submitit says why
                lines = [ln for ln in str(err).splitlines() if ln.strip()]
                log.error("fold %d: job %s failed: %s", fold, job.job_id, lines[-1] if lines else err)
                code = None
            finish(out, cfg_hash, fold, code, time.monotonic() - t0, resumed, results)
    except KeyboardInterrupt:
        for fold, (job, _t0, _r) in jobs.items():
            if fold not in results:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
                results[fold] = {"fold": fold, "status": "interrupted", "log": str(out / f"fold_{fold}" / LOG)}
        raise


def run_folds(
    cfg: dict, cfg_hash: str, out: Path, name: str, folds: list[int], parallel: int, results: dict[int, dict]
) -> None:
    """Run ``folds`` (``parallel`` at a time) as ``fit`` processes; fills ``results`` as they end or fail.

    On Ctrl-C the running folds get SIGINT (a terminal sends it to them too), are marked interrupted and
    :class:`KeyboardInterrupt` is raised again; completed folds are untouched.
    """
    accel = str(cfg.get("trainer", {}).get("accelerator", "auto"))
    gpus = []
    if torch.cuda.is_available() and accel in ("auto", "gpu", "cuda"):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    threads = max(1, (os.cpu_count() or 1) // parallel)
    pending, running, free = list(folds), {}, list(range(parallel))
    try:
        while pending or running:
            while pending and free:
                fold, slot = pending.pop(0), free.pop(0)
                fold_dir = out / f"fold_{fold}"
                fold_dir.mkdir(parents=True, exist_ok=True)
                env = dict(os.environ, PYTHONUNBUFFERED="1")
                if gpus and parallel > 1:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                elif parallel > 1:
                    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
                cmd = fold_command(cfg, out, name, fold, devices_one=bool(gpus) and parallel > 1)
                resumed = any(a.startswith("--ckpt_path=") for a in cmd)
                log.info("fold %d: %s%s", fold, "resuming from last.ckpt, " if resumed else "", f"log {fold_dir / LOG}")
                fh = (fold_dir / LOG).open("a")
                fh.write(f"\n$ {' '.join(cmd)}\n")
                fh.flush()
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                running[proc] = (fold, slot, time.monotonic(), fh, resumed)
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                fold, slot, t0, fh, resumed = running.pop(proc)
                fh.close()
                free.append(slot)
                finish(out, cfg_hash, fold, proc.returncode, time.monotonic() - t0, resumed, results)
    except KeyboardInterrupt:
        for proc in running:  # a terminal's Ctrl-C reaches them too; a signal may not
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGINT)
        for proc, (fold, _slot, _t0, fh, _r) in running.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
            results[fold] = {"fold": fold, "status": "interrupted", "log": str(out / f"fold_{fold}" / LOG)}
        raise
