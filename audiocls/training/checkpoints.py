"""Checkpoints: crash-safe saving, the checks before a run reads one, and the model a checkpoint rebuilds.

Saving goes through :mod:`audiocls.files` (temporary file, fsync, rename): a process killed at any moment leaves
the previous complete file or the new one, never a truncated one. Reading goes through
:func:`audiocls.files.load_torch_file` (``weights_only=True``: a checkpoint cannot run code when it is loaded).
:func:`load_checkpoint` turns a checkpoint into a :class:`LoadedModel`, the one object that predict, explain and
export use.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from audiocls.audio.frontend import LogMelFrontend, build_frontend
from audiocls.errors import ConfigError
from audiocls.files import _atomic_write, is_local_path, load_torch_file
from audiocls.models.classifier import AudioClassifier
from audiocls.models.task import DEFAULT_TASK, get_task
from audiocls.models.wave import WaveClassifier

__all__ = [
    "AtomicCheckpointIO",
    "resolve_last_checkpoint",
    "find_last_checkpoint",
    "check_checkpoint",
    "read_lightning_checkpoint",
    "state_dict_mismatch",
    "LoadedModel",
    "load_checkpoint",
]

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, with crash-safe saving and safe loading.

    * save: ``torch.save`` streams into ``.<name>.partial`` beside the target, which is fsynced and renamed over
      the target (``os.replace``), then the folder is fsynced. Lightning's own save buffers the whole checkpoint in
      memory and does not fsync; remote (fsspec URL) paths still take Lightning's path.
    * load: always ``weights_only=True`` (:func:`~audiocls.files.load_torch_file`; an audiocls checkpoint needs no
      more); a missing, unreadable or truncated file raises :class:`~audiocls.errors.ConfigError` naming it.

    ``AudioCLI`` installs it on every trainer (unless a CheckpointIO plugin is given with ``--trainer.plugins``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not is_local_path(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        _atomic_write(path, lambda fh: torch.save(checkpoint, fh))
        log.debug("saved checkpoint %s", path)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not is_local_path(path):  # fsspec URLs: Lightning's reader, still weights only
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_torch_file(path, map_location=map_location)


def resolve_last_checkpoint(trainer: Any, ckpt_path: str | None, *, resume: bool) -> str | None:
    """Turn ``ckpt_path='last'`` into the ``last.ckpt`` of the newest run of this logger, and continue that run.

    With a versioned logger (the default CSVLogger: ``runs/<name>/version_N``) every ``fit`` opens a new
    ``version_N`` folder, so Lightning's own ``'last'`` would look in the new, empty folder and silently train
    from scratch. Here ``'last'`` means the most recently written ``<save_dir>/<name>/version_*/checkpoints/last.ckpt``;
    with ``resume=True`` (``fit``) the logger is pointed at that run's folder, so logs, checkpoints and results of
    the resumed run land beside the killed run's (its ``metrics.csv`` is kept as ``metrics.before-resume-K.csv``,
    by global rank 0 alone).

    Args:
        trainer: the Trainer, before ``fit``/``test``/... has started.
        ckpt_path: the requested path; anything but ``'last'`` is returned unchanged.
        resume: True for ``fit`` (continue in the same folder), False to only resolve the file.

    Returns:
        The checkpoint file, or ``None`` for a ``fit`` with no earlier checkpoint (training starts from scratch,
        as Lightning does, with a warning naming the folder searched).

    Raises:
        ConfigError: ``test``/``validate``/``predict`` with ``'last'`` and no checkpoint found.
    """
    if ckpt_path != "last":
        return ckpt_path
    callback = getattr(trainer, "checkpoint_callback", None)
    logger = getattr(trainer, "logger", None)
    if callback is None or getattr(callback, "dirpath", None) is not None or logger is None:
        return ckpt_path  # a fixed checkpoint folder: Lightning's own lookup finds last.ckpt there
    root = Path(getattr(logger, "save_dir", None) or trainer.default_root_dir) / str(logger.name)
    found = find_last_checkpoint(root, name=f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")
    if found is None:
        if not resume:
            raise ConfigError(f"ckpt_path=last: no {root}/version_*/checkpoints/last.ckpt; pass the checkpoint's path")
        log.warning("ckpt_path=last: no checkpoint under %s/version_*/checkpoints; training starts from scratch", root)
        return None
    # private, no public hook: a CSV/TensorBoard logger takes its version only at construction, and here the logger
    # exists already; _version is set before _experiment (its writer) is created, so the resumed run's folder is used
    if resume and hasattr(logger, "_version") and getattr(logger, "_experiment", None) is None:
        run_dir = found.parent.parent
        logger._version = run_dir.name
        # under torchrun/srun every process resolves 'last' at once (before the process group exists, so there is no
        # barrier to wait at); only global rank 0 moves the file, and only rank 0's logger writes or reads metrics.csv
        if getattr(trainer, "is_global_zero", True):
            _keep_earlier_metrics(run_dir)
        log.info("resuming %s from %s", run_dir, found)
    return str(found)


def _keep_earlier_metrics(run_dir: Path) -> None:
    """Move the resumed run's ``metrics.csv`` aside as ``metrics.before-resume-K.csv`` (the first free K >= 1)."""
    k = 1
    while (run_dir / f"metrics.before-resume-{k}.csv").exists():
        k += 1
    with contextlib.suppress(FileNotFoundError):  # the killed run logged nothing yet
        (run_dir / "metrics.csv").rename(run_dir / f"metrics.before-resume-{k}.csv")


def find_last_checkpoint(root_dir: str | Path, name: str = "last.ckpt") -> Path | None:
    """The most recently written ``<root_dir>/version_*/checkpoints/<name>`` (``None`` when there is none)."""
    found = [p for p in Path(root_dir).glob(f"*/checkpoints/{name}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns).absolute() if found else None


#: hyperparameters that must match between a checkpoint and the run that loads it
MODEL_KEYS = ("backbone", "num_classes", "in_chans", "class_names")

DATA_KEYS = ("sample_rate", "clip_seconds", "frontend")

SHOW = 5


def _as_json_values(value: Any) -> Any:
    """Tuples as lists, dataclasses as dicts: the form in which hyperparameters compare equal."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "__dict__", str(v))))


def state_dict_mismatch(
    expected: Mapping[str, Any], found: Mapping[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, ``key (found shape) vs (expected shape)``) of two state dicts."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    shapes = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def _summary(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (file vs model): {_names(shapes)}")
    return "; ".join(parts)


def _comparable(hparams: Mapping[str, Any], key: str) -> Any:
    """``hparams[key]`` in comparable form; with ``normalize: train`` the frontend's mean/std are measured at setup
    (and restored from the checkpoint), so they are not part of the config to compare."""
    value = _as_json_values(hparams[key])
    if key == "frontend" and hparams.get("normalize") == "train" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in ("mean", "std")}
    return value


def read_lightning_checkpoint(path: str | Path) -> dict:
    """The dict of a Lightning checkpoint file, memory-mapped (a quick look, also at a large file).

    Raises:
        ConfigError: one line naming the file: missing, truncated, not a torch file, or holding no ``state_dict``.
    """
    path = Path(path).expanduser()
    ckpt = load_torch_file(path, mmap=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path={path} holds no 'state_dict': it is not a Lightning checkpoint")
    return ckpt


def _measured_frontend(ckpt: dict, config: Mapping) -> dict:
    """The frontend settings with the statistics measured on the training split (``data.normalize: train``), which
    Lightning saved with the datamodule's state (``AudioDataModule.state_dict``) under the datamodule's class name.
    Checkpoints written before the statistics moved there carry them in ``config`` already."""
    config = dict(config)
    for value in ckpt.values():
        if isinstance(value, Mapping) and value.get("frontend_mean") is not None:
            config.update(mean=list(value["frontend_mean"]), std=list(value["frontend_std"]))
    return config


def check_checkpoint(ckpt_path: str | Path, model: torch.nn.Module, datamodule: Any = None) -> None:
    """Refuse a checkpoint written by an incompatible config, before any data is decoded.

    Compares the checkpoint's model hyperparameters (:data:`MODEL_KEYS`: backbone, num_classes, in_chans,
    class_names), its datamodule hyperparameters (:data:`DATA_KEYS`: sample_rate, clip_seconds, frontend) and
    its weights' names and shapes with the configured ``model`` and ``datamodule``; first its task (single- or
    multi-label), named alone since the rest would only list metric states.

    Raises:
        ConfigError: the file is missing or unreadable, or differs in any of the above; the message names the
            differing settings (checkpoint value vs config value) or tensors, and the fix.
    """
    path = Path(ckpt_path).expanduser()
    ckpt = read_lightning_checkpoint(path)
    fix = (
        "use the config the checkpoint was trained with (its run folder holds config.yaml: --config <run>/config.yaml), "
        "or start a new run without --ckpt_path"
    )
    _check_task(path, ckpt.get("hyper_parameters"), getattr(model, "hparams", {}))
    diffs = []
    sources = [("model", ckpt.get("hyper_parameters"), getattr(model, "hparams", {}), MODEL_KEYS)]
    if datamodule is not None:
        sources.append(("data", ckpt.get("datamodule_hyper_parameters"), getattr(datamodule, "hparams", {}), DATA_KEYS))
    for group, saved, current, keys in sources:
        if not isinstance(saved, Mapping):
            continue
        for key in keys:
            if key in saved and key in current and _comparable(saved, key) != _comparable(current, key):
                diffs.append(
                    f"{group}.{key}: checkpoint {_as_json_values(saved[key])!r} vs config {_as_json_values(current[key])!r}"
                )
    if diffs:
        raise ConfigError(f"ckpt_path={path} was written by an incompatible config: {'; '.join(diffs)}; {fix}")
    if hasattr(model, "on_load_checkpoint"):  # what Lightning does before loading (fills in newer buffers)
        model.on_load_checkpoint(ckpt)
    mismatch = state_dict_mismatch(model.state_dict(), ckpt["state_dict"])
    if any(mismatch):
        raise ConfigError(f"ckpt_path={path} does not fit the configured model: {_summary(*mismatch)}; {fix}")


def _check_task(path: Path, saved: Any, current: Any) -> None:
    """Refuse a checkpoint of the other task (single-label weights for multi-label data, or the reverse) in one
    line naming both, before its metrics' state names mismatch (``val_acc_best`` vs ``val_map_best``)."""
    if not isinstance(saved, Mapping) or not isinstance(current, Mapping) or "task" not in current:
        return
    ckpt_task = get_task(saved.get("task", DEFAULT_TASK))  # checkpoints from before model.task were single-label
    want = get_task(current["task"])
    if ckpt_task.name != want.name:
        raise ConfigError(
            f"ckpt_path={path} is {ckpt_task.description} ({ckpt_task.name}), the data is {want.description} "
            f"({want.name}): use a checkpoint trained on this kind of data"
        )


@dataclass
class LoadedModel:
    """Everything needed to classify audio, rebuilt from one checkpoint.

    Attributes:
        model: the classifier in eval mode, on the CPU.
        frontend: the training frontend, ``wave (B, T) -> spec (B, C, n_mels, frames)``.
        sample_rate: rate in Hz the model expects.
        clip_samples: length in samples of one model input (the training clip).
        class_names: one name per output.
        path: the checkpoint file.
        data_hparams: the datamodule's settings stored in the checkpoint (``root``, ``frontend``, ...).
    """

    model: AudioClassifier
    frontend: LogMelFrontend
    sample_rate: int
    clip_samples: int
    class_names: list[str]
    path: Path
    data_hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    @property
    def device(self) -> torch.device:
        """Where the frontend (and the model) runs."""
        return next(iter(self.frontend.buffers()), torch.empty(0)).device

    def wave_classifier(self) -> WaveClassifier:
        """The frontend and the backbone as one module, ``wave (B, T) -> logits (B, num_classes)``."""
        return WaveClassifier(self.frontend, self.model).eval()

    def to(self, device: torch.device | str) -> LoadedModel:
        self.model.to(device)
        self.frontend.to(device)
        return self


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model and its frontend from a checkpoint written by ``audiocls fit``.

    Pretrained-weight settings of the training run (``pretrained``, ``weights``) are ignored: the weights
    come from the checkpoint, so the weight file used at training time need not exist here.

    Args:
        path: the ``.ckpt`` file.
        map_location: where tensors are loaded.

    Raises:
        ConfigError: the file is missing, unreadable, or not written by ``audiocls fit``.
    """
    path = Path(path).expanduser()
    ckpt = load_torch_file(path, map_location=map_location)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    dm = ckpt.get("datamodule_hyper_parameters") if isinstance(ckpt, dict) else None
    complete = isinstance(hp, dict) and "backbone" in hp and isinstance(dm, dict) and "state_dict" in ckpt
    if not complete or not all(k in dm for k in ("sample_rate", "clip_seconds")):
        raise ConfigError(
            f"{path} is not a checkpoint written by 'audiocls fit' (it lacks the model and datamodule "
            "hyperparameters audiocls needs to rebuild the model and its frontend); train with 'audiocls fit' "
            "or pass that run's checkpoints/last.ckpt"
        )
    accepted = inspect.signature(AudioClassifier.__init__).parameters
    kwargs = {k: v for k, v in hp.items() if k in accepted and k not in ("self", "optimizer", "scheduler")}
    kwargs.update(pretrained=False, weights=None)  # the checkpoint holds the weights
    model = AudioClassifier(**kwargs)
    model.on_load_checkpoint(ckpt)  # as Lightning does: a multi-label checkpoint without thresholds gets 0.5
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing:
        raise ConfigError(f"checkpoint {path} lacks weights of model.backbone={hp['backbone']!r}: {missing[:3]} ...")
    if unexpected:
        log.warning(
            "checkpoint %s has %d tensors the model does not use, e.g. %s", path, len(unexpected), unexpected[0]
        )
    model.eval()

    sample_rate = int(dm["sample_rate"])  # the values in force, stored by AudioDataModule.__init__
    clip_samples = round(float(dm["clip_seconds"]) * sample_rate)
    frontend = build_frontend(_measured_frontend(ckpt, dm.get("frontend") or {}), sample_rate).eval()
    if frontend.out_channels != hp.get("in_chans", frontend.out_channels):
        raise ConfigError(
            f"checkpoint {path}: the frontend makes {frontend.out_channels} channels but the model expects "
            f"in_chans={hp['in_chans']}"
        )
    return LoadedModel(model, frontend, sample_rate, clip_samples, list(model.class_names), path, dict(dm))
