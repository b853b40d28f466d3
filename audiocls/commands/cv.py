"""``audiocls cv``: every fold of a dataset, each one ``fit`` in its own process, resumable, with an honest report.

    audiocls cv --config configs/esc50.yaml --data.root ~/data/ESC-50 [--folds 1,3] [--parallel 2] [--out DIR]

Any other argument is a ``fit`` override. The user's config and overrides are resolved once into
``DIR/cv_config.yaml``, which every fold runs with ``--data.fold K``; its hash (ignoring the settings in
:data:`HASH_IGNORED`, which do not change a result) is recorded in ``DIR/cv.json`` and in every fold's result,
and a directory made with another config is refused. ``DIR/fold_K/`` holds one run: ``config.yaml``,
``checkpoints/{last,best}.ckpt``, ``metrics.json``, ``fit.log``, ``test_each_epoch.json`` and
``predictions.npz`` (from :class:`TestFoldEachEpoch`), and ``result.json``, written last: a fold is complete
when its ``result.json`` is valid and carries the current hash. An incomplete fold resumes from its
``last.ckpt``. The report (:mod:`audiocls.commands.cv_report`) gives the final epoch's test-fold accuracy (the honest
figure) and, labelled, the best epoch's (the paper's protocol).

``--launcher submitit`` submits one job per fold through submitit instead (SLURM where ``sbatch`` exists,
``--cluster local`` for local processes), each job running the same fold command, so the resume rules are the
same; the driver waits for the jobs and writes the same report. Job files are under ``DIR/submitit/``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning.pytorch import Callback

from audiocls.commands.cv_report import (
    EPOCHS,
    LOG,
    PREDICTIONS,
    RESULT,
    fold_metrics,
    headline,
    label_frequency,
    write_json,
    write_report,
)
from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_bytes, atomic_write_text
from audiocls.training.cli import build_datamodule, resolve_config
from audiocls.training.curves import PANELS, plot_series, read_epoch_metrics

__all__ = ["TestFoldEachEpoch", "main", "config_hash", "gather_fold", "fold_metrics", "resolve_config"]

log = logging.getLogger(__name__)

#: dotted config keys left out of the config hash: where a run lives and how it is displayed or scheduled
HASH_IGNORED = (
    "data.init_args.fold",
    "data.init_args.num_workers",
    "data.init_args.cache_dir",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "checkpoint.dirpath",
    "ckpt_path",
    "test_after_fit",
)


# --- the callback each fold runs with -------------------------------------------------------------------------
def _loader_order(loader) -> list[int]:
    """Dataset positions of a non-shuffled evaluation loader, in the order this process sees them.

    Under DDP that is the datamodule's ``UnrepeatedDistributedSampler`` shard (every clip on exactly one rank).
    """
    return [int(i) for i in loader.sampler]


def gather_fold(trainer, pl_module, rows: list[tuple[torch.Tensor, torch.Tensor]], loader):
    """Softmax outputs (N, num_classes) and labels (N,) of a whole evaluation set, gathered over the processes.

    A multi-label model (``task: multilabel``) gives per-class sigmoid outputs (N, num_classes) and multi-hot
    int labels (N, num_classes).

    Args:
        rows: this process's ``(logits (B, K), labels (B,) or multi-hot (B, K))`` per batch, in loader order.
        loader: the loader that produced them (its sampler gives each row's position in the dataset).

    Returns:
        ``(probs, labels)`` as numpy arrays in dataset order, every clip once; every process gets them (the
        gather is a collective call: all processes must call this).
    """
    k = len(pl_module.class_names)
    device = pl_module.device
    probs = (
        torch.cat([pl_module.probabilities(r[0].float()) for r in rows]) if rows else torch.zeros(0, k, device=device)
    )
    empty = (0, k) if getattr(pl_module, "multilabel", False) else (0,)
    labels = torch.cat([r[1] for r in rows]).long() if rows else torch.zeros(empty, dtype=torch.long, device=device)
    order = torch.tensor(_loader_order(loader)[: len(labels)], dtype=torch.long, device=device)
    if trainer.world_size > 1:
        from torchmetrics.utilities.distributed import gather_all_tensors  # pads and trims uneven shards

        probs, labels, order = (torch.cat(gather_all_tensors(t.to(device))) for t in (probs, labels, order))
    if len(set(order.tolist())) != len(order):
        raise RuntimeError("the evaluation shards overlap: a clip was scored by two processes")
    sort = order.argsort()
    return probs[sort].cpu().numpy(), labels[sort].cpu().numpy()


class TestFoldEachEpoch(Callback):
    """Accuracy on the held-out fold after every validation epoch, and the final model's test-fold outputs.

    For a multi-label model the per-epoch figure is mAP (``test_each_epoch/mAP``, ``"mAP"`` in the history) and
    ``predictions.npz`` holds sigmoid outputs and multi-hot labels (N, num_classes).

    During ``fit`` the datamodule's held-out fold is a second validation dataloader
    (``AudioDataModule.validate_test_fold``), evaluated by Lightning's own loop (device, precision, DDP shards)
    and gathered over the processes. The per-epoch figures are the paper's protocol (picking the best of them
    flatters the result); they are logged as ``test_each_epoch/acc`` and written to ``test_each_epoch.json``.
    At the end of ``test`` (which ``audiocls fit`` runs on the final weights) the softmax outputs, labels, file
    names and class names of the whole fold are saved to ``predictions.npz`` for the report and
    :mod:`audiocls.commands.ensemble`. The history is kept in checkpoints, so a resumed fit continues it.

    Args:
        dirpath: where the files go; ``None`` is the trainer's ``log_dir``.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self.history: list[dict] = []
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _dir(self, trainer) -> Path:
        path = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.datamodule is not None:
            trainer.datamodule.validate_test_fold = True  # before Lightning asks for the validation loaders

    def _keep(self, outputs, batch) -> None:
        self._rows.append((outputs.detach(), batch[1].detach()))

    # per epoch: dataloader 1 of validation is the held-out fold
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if dataloader_idx == 1 and not trainer.sanity_checking:
            self._keep(outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not getattr(trainer.datamodule, "validate_test_fold", False):
            return
        probs, labels = gather_fold(trainer, pl_module, self._rows, trainer.val_dataloaders[1])
        self._rows = []
        key, value = headline(probs, labels)  # acc, or mAP for multi-hot labels
        self.history = [h for h in self.history if h["epoch"] != trainer.current_epoch]
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, key: value})
        pl_module.log(f"test_each_epoch/{key}", value, sync_dist=True)  # the same gathered figure on every process
        if trainer.is_global_zero:
            write_json(self._dir(trainer) / EPOCHS, self.history)

    # the final weights: the whole fold, saved
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        loader = trainer.test_dataloaders
        loader = loader[0] if isinstance(loader, list | tuple) else loader
        probs, labels = gather_fold(trainer, pl_module, self._rows, loader)
        self._rows = []
        if not trainer.is_global_zero:
            return
        test = getattr(trainer.datamodule, "splits", {}).get("test")
        files = [str(test.cache.files[i]) for i in test.indices] if hasattr(test, "cache") else []
        names = list(getattr(pl_module, "class_names", None) or range(probs.shape[1]))
        out = self._dir(trainer)
        buf = io.BytesIO()
        np.savez(buf, probs=probs, labels=labels, files=np.array(files, dtype=str), class_names=np.array(names, str))
        atomic_write_bytes(out / PREDICTIONS, buf.getvalue())
        write_json(out / EPOCHS, self.history)

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))


# --- config: hash (resolve_config, build_datamodule: audiocls.training.cli) ---------------------------------------------------------------------------
def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict) and obj:
        return {k: v for key, val in obj.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    return {prefix[:-1]: obj}


def _hashed_items(cfg: dict) -> dict:
    return {k: v for k, v in _flatten(cfg).items() if not any(k == i or k.startswith(i + ".") for i in HASH_IGNORED)}


def config_hash(cfg: dict) -> str:
    """sha256 (16 hex digits) of the resolved config without :data:`HASH_IGNORED`."""
    blob = json.dumps(_hashed_items(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the driver ---------------------------------------------------------------------------------------------------
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


def _check_dir(out: Path, cfg: dict, cfg_hash: str) -> None:
    meta = out / "cv.json"
    if not meta.is_file():
        return
    old = json.loads(meta.read_text()).get("config_hash")
    if old == cfg_hash:
        return
    diff = ""
    if (out / "cv_config.yaml").is_file():
        before, now = _hashed_items(yaml.safe_load((out / "cv_config.yaml").read_text())), _hashed_items(cfg)
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        diff = "; differing settings: " + ", ".join(f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in keys[:5])
    raise ConfigError(
        f"{out} holds a cv run of another config (hash {old}, now {cfg_hash}){diff}; pass a new --out, "
        f"or delete {out} to start over"
    )


def _fold_done(fold_dir: Path, cfg_hash: str) -> dict | None:
    try:
        result = json.loads((fold_dir / RESULT).read_text())
    except (OSError, ValueError):
        return None
    if result.get("config_hash") != cfg_hash:
        raise ConfigError(
            f"{fold_dir / RESULT} was made with another config (hash {result.get('config_hash')}, now "
            f"{cfg_hash}); pass a new --out or delete {fold_dir}"
        )
    return result if result.get("status") == "done" and (fold_dir / PREDICTIONS).is_file() else None


def _logger_args(cfg: dict, out: Path, fold_dir: Path, name: str, fold: int) -> list[str]:
    logger = cfg.get("trainer", {}).get("logger")
    path = logger.get("class_path", "") if isinstance(logger, dict) else ""
    pre = "--trainer.logger.init_args"
    if path.endswith(("CSVLogger", "TensorBoardLogger")):  # log_dir = save_dir/name/version = out/fold_K
        return [f"{pre}.save_dir={out}", f"{pre}.name=", f"{pre}.version={fold_dir.name}"]
    if path.endswith("WandbLogger"):  # one W&B run per fold, grouped by the cv name
        return [
            f"{pre}.save_dir={fold_dir}",
            f"{pre}.name={name}-fold{fold}",
            f"--trainer.logger.dict_kwargs.group={name}",
        ]
    return []


def _fold_command(cfg: dict, out: Path, name: str, fold: int, devices_one: bool) -> list[str]:
    fold_dir = out / f"fold_{fold}"
    callback = {"class_path": "audiocls.commands.cv.TestFoldEachEpoch", "init_args": {"dirpath": str(fold_dir)}}
    cmd = [sys.executable, "-m", "audiocls.cli", "fit", "--config", str(out / "cv_config.yaml")]
    cmd += [f"--data.fold={fold}", f"--trainer.default_root_dir={fold_dir}", "--test_after_fit=true"]
    cmd += [f"--checkpoint.dirpath={fold_dir / 'checkpoints'}", f"--trainer.callbacks+={json.dumps(callback)}"]
    cmd += _logger_args(cfg, out, fold_dir, name, fold)
    if devices_one:
        cmd.append("--trainer.devices=1")
    last = fold_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        cmd.append(f"--ckpt_path={last}")
    return cmd


def _collect(fold_dir: Path, fold: int, cfg_hash: str, wall_s: float, resumed: bool) -> dict:
    """``result.json`` of a finished fold, from its saved predictions and per-epoch figures."""
    data = np.load(fold_dir / PREDICTIONS)
    metrics = fold_metrics(data["probs"], data["labels"])
    key = "mAP" if data["labels"].ndim == 2 else "acc"
    history = json.loads((fold_dir / EPOCHS).read_text()) if (fold_dir / EPOCHS).is_file() else []
    history = [h for h in history if key in h]
    best = max(history, key=lambda h: h[key]) if history else None
    cli_metrics = fold_dir / "metrics.json"
    result = {
        "fold": fold,
        "status": "done",
        "config_hash": cfg_hash,
        f"final_{key}": metrics[key],
        f"best_epoch_{key}": best[key] if best else None,
        "best_epoch": best["epoch"] + 1 if best else None,
        "epochs": len(history),
    }
    if key == "mAP":  # multi-label: F1 at the threshold and the label-frequency baseline of mAP
        result.update(
            task="multilabel", f1_micro=metrics["f1_micro"], f1_macro=metrics["f1_macro"],
            mAP_baseline=label_frequency(data["labels"]),
        )  # fmt: skip
    else:
        result["macro_f1"] = metrics["macro_f1"]
    result |= {
        "num_test": len(data["labels"]),
        "test_metrics": json.loads(cli_metrics.read_text()) if cli_metrics.is_file() else {},
        "wall_s": round(wall_s, 1),
        "resumed": resumed,
        "log": str(fold_dir / LOG),
    }
    write_json(fold_dir / RESULT, result)
    return result


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _finish(
    out: Path, cfg_hash: str, fold: int, returncode: int | None, wall: float, resumed: bool, results: dict
) -> None:
    """Record a fold whose process ended: its ``result.json`` when it wrote its predictions, else the failure."""
    fold_dir = out / f"fold_{fold}"
    if returncode == 0 and (fold_dir / PREDICTIONS).is_file():
        results[fold] = _collect(fold_dir, fold, cfg_hash, wall, resumed)
        key = "mAP" if "final_mAP" in results[fold] else "acc"
        log.info("fold %d done in %.0f s: final-epoch %s %.4f", fold, wall, key, results[fold][f"final_{key}"])
    else:
        why = _last_line(fold_dir / LOG) if returncode else f"no {PREDICTIONS} written"
        results[fold] = {"fold": fold, "status": "failed", "log": str(fold_dir / LOG), "error": why}
        log.error("fold %d failed (exit %s): %s; log: %s", fold, returncode, why, fold_dir / LOG)


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
        cmd = _fold_command(cfg, out, name, fold, devices_one=False)
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
            _finish(out, cfg_hash, fold, code, time.monotonic() - t0, resumed, results)
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
                cmd = _fold_command(cfg, out, name, fold, devices_one=bool(gpus) and parallel > 1)
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
                _finish(out, cfg_hash, fold, proc.returncode, time.monotonic() - t0, resumed, results)
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


#: panels of ``cv_curves.png``: the fold runs' logged curves and the held-out fold's accuracy (mAP) per epoch
CV_PANELS = (*PANELS, ("test_fold_acc", "held-out fold accuracy (multi-label: mAP)"))


def plot_folds(out: Path, folds: list[int], name: str) -> Path | None:
    """``cv_curves.png`` in the cv folder: every fold's train loss, val acc and held-out fold acc per epoch."""
    runs = {}
    for fold in folds:
        fold_dir = out / f"fold_{fold}"
        metrics_csv = fold_dir / "metrics.csv"
        series = read_epoch_metrics(metrics_csv, tuple(c for c, _ in PANELS)) if metrics_csv.is_file() else {}
        if (fold_dir / EPOCHS).is_file():
            history = json.loads((fold_dir / EPOCHS).read_text())
            series["test_fold_acc"] = [(h["epoch"], h.get("acc", h.get("mAP"))) for h in history]
        if series:
            runs[f"fold {fold}"] = series
    written = plot_series(runs, out / "cv_curves.png", CV_PANELS, title=name)
    if written:
        log.info("fold curves written to %s", written)
    return written


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
    fold_ids = list(getattr(dm, "fold_ids", None) or range(1, dm.num_folds + 1))
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
    _check_dir(out, cfg, cfg_hash)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cv_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    write_json(out / "cv.json", {"config_hash": cfg_hash, "name": name, "datamodule": cfg["data"]["class_path"]})

    results: dict[int, dict] = {}
    todo = []
    for fold in folds:
        done = _fold_done(out / f"fold_{fold}", cfg_hash)
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
    report = write_report(out, name, cfg_hash, [results[f] for f in folds], fold_ids)
    plot_folds(out, folds, name)
    print(report)
    if interrupted:
        return 130
    return 0 if all(r["status"] == "done" for r in results.values()) else 1
