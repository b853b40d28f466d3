"""The records of an ``audiocls cv`` run: the config hash, the check that a folder belongs to this config, and
each fold's ``result.json`` (complete, collected from its saved predictions, or failed)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import yaml

from audiocls.commands.cv_report import EPOCHS, LOG, PREDICTIONS, RESULT, write_json
from audiocls.errors import ConfigError
from audiocls.models.task import saved_task

__all__ = ["HASH_IGNORED", "config_hash", "check_dir", "fold_done", "collect", "finish"]

log = logging.getLogger(__name__)

#: dotted config keys left out of the config hash: where a run lives and how it is displayed or scheduled
HASH_IGNORED = (
    "data.init_args.fold",
    "data.init_args.validate_test_fold",
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


def check_dir(out: Path, cfg: dict, cfg_hash: str) -> None:
    """Refuse (:class:`ConfigError`, naming up to 5 differing settings) a cv folder made with another config."""
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


def fold_done(fold_dir: Path, cfg_hash: str) -> dict | None:
    """A complete fold's ``result.json`` (done, with its predictions); ``None`` when the fold must (re)run."""
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


def collect(fold_dir: Path, fold: int, cfg_hash: str, wall_s: float, resumed: bool) -> dict:
    """``result.json`` of a finished fold, from its saved predictions and per-epoch figures."""
    data = np.load(fold_dir / PREDICTIONS)
    task = saved_task(data)
    metrics = task.score(data["probs"], data["labels"])
    key = task.headline
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
    result.update(task.fold_fields(metrics, data["labels"]))  # e.g. macro F1; F1 and the mAP baseline
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


def finish(
    out: Path, cfg_hash: str, fold: int, returncode: int | None, wall: float, resumed: bool, results: dict
) -> None:
    """Record a fold whose process ended: its ``result.json`` when it wrote its predictions, else the failure."""
    fold_dir = out / f"fold_{fold}"
    if returncode == 0 and (fold_dir / PREDICTIONS).is_file():
        results[fold] = collect(fold_dir, fold, cfg_hash, wall, resumed)
        key = saved_task(np.load(fold_dir / PREDICTIONS)).headline
        log.info("fold %d done in %.0f s: final-epoch %s %.4f", fold, wall, key, results[fold][f"final_{key}"])
    else:
        why = _last_line(fold_dir / LOG) if returncode else f"no {PREDICTIONS} written"
        results[fold] = {"fold": fold, "status": "failed", "log": str(fold_dir / LOG), "error": why}
        log.error("fold %d failed (exit %s): %s; log: %s", fold, returncode, why, fold_dir / LOG)
