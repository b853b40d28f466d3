"""Weights & Biases through Lightning's own ``WandbLogger``: offline without a key, tags, the resolved config, media.

One config switches a run to W&B (``configs/logger/wandb.yaml``, or ``--trainer.logger=WandbLogger``)::

    audiocls fit --config configs/esc50.yaml --config configs/logger/wandb.yaml --data.root ~/data/ESC-50

:class:`~audiocls.training.cli.AudioCLI` then

- fills in the logger's settings with :func:`configure_wandb`: tags (backbone, pretrained/random, dataset,
  fold), a run name, and offline mode when no API key is configured (``wandb login`` or ``WANDB_API_KEY``);
  the group is ``WANDB_RUN_GROUP`` (the cv driver's name) unless set;
- adds a ``LearningRateMonitor`` and :class:`WandbMedia` (example spectrograms per class at the start, the test
  confusion matrix and a per-class accuracy table at the end) with :func:`extra_callbacks`;
- logs the fully resolved config to the W&B run with :func:`log_config` (called by
  :class:`~audiocls.training.run_folder.LoggedSaveConfigCallback`, which writes the same config to ``config.yaml``);
- ends the run with :func:`finish_wandb` (also after an error), which returns the ``wandb sync`` line of an
  offline run.

Checkpoints go to W&B as artifacts only when asked (``--trainer.logger.init_args.log_model=true``).
"""

from __future__ import annotations

import importlib
import logging
import netrc
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from jsonargparse import Namespace
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger

from audiocls.models.task import DEFAULT_TASK, get_task

__all__ = [
    "WandbMedia",
    "configure_wandb",
    "extra_callbacks",
    "finish_wandb",
    "log_config",
    "run_tags",
    "wandb_key_configured",
]

log = logging.getLogger(__name__)


# --- configuration, before anything is instantiated ---------------------------------------------------------
def wandb_key_configured() -> bool:
    """Whether W&B credentials are configured: ``WANDB_API_KEY``, an identity token, or a netrc entry.

    The netrc file is ``$NETRC`` or ``~/.netrc`` (where ``wandb login`` writes), for the host of
    ``$WANDB_BASE_URL`` (``api.wandb.ai`` by default). Nothing is sent over the network.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    if os.environ.get("NETRC"):
        candidates = [Path(os.environ["NETRC"]).expanduser()]
    else:
        candidates = [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            auth = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError) as err:
            log.warning("cannot read %s (%s); treating W&B as not logged in", path, err)
            continue
        if auth and auth[2]:
            return True
    return False


def _import(class_path: object) -> type | None:
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _is_wandb_logger(item: object) -> bool:
    cls = _import(item.get("class_path")) if isinstance(item, Namespace) else None
    return isinstance(cls, type) and issubclass(cls, WandbLogger)


def _facts(config: Namespace) -> dict[str, str]:
    """backbone, init (``pretrained``/``random``), dataset and fold of a parsed config; absent ones left out."""
    model = config.get("model") or Namespace()
    data = config.get("data") or Namespace()
    init = data.get("init_args") if isinstance(data.get("init_args"), Namespace) else data
    facts = {"init": "pretrained" if model.get("pretrained") or model.get("weights") else "random"}
    if model.get("backbone"):
        facts["backbone"] = str(model.get("backbone"))
    class_path = data.get("class_path")
    if isinstance(class_path, str):
        name = class_path.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
        facts["dataset"] = "esc10" if init.get("esc10") else name
    if init.get("fold") is not None:
        facts["fold"] = f"fold{init.get('fold')}"
    return facts


def run_tags(config: Namespace) -> list[str]:
    """Tags of a run from its parsed config: backbone, ``pretrained``/``random``, dataset, ``fold<k>``.

    The dataset is the datamodule's class name without ``DataModule``, lower case (``esc50``, ``synthetic``),
    ``esc10`` for the ESC-10 subset. Settings that are absent are left out.
    """
    facts = _facts(config)
    return [facts[k] for k in ("backbone", "init", "dataset", "fold") if k in facts]


def configure_wandb(config: Namespace) -> bool:
    """Fill in the settings of every ``WandbLogger`` of a parsed ``audiocls`` config, in place.

    Adds :func:`run_tags` to the user's tags, names the run ``<dataset>-fold<k>-<backbone>`` when it has no
    name, and selects offline mode when no mode is chosen (``offline``, ``mode``, ``$WANDB_MODE``) and no API key
    is configured, so a run never stops to ask for a key.

    Args:
        config: the subcommand's config (``trainer``, ``model``, ``data``, ...), before instantiation.

    Returns:
        True when a ``WandbLogger`` is configured.
    """
    loggers = config.get("trainer.logger") if isinstance(config.get("trainer"), Namespace) else None
    found = False
    for item in loggers if isinstance(loggers, list) else [loggers]:
        if not _is_wandb_logger(item):
            continue
        found = True
        if not isinstance(item.get("init_args"), Namespace):
            item.init_args = Namespace()
        args, facts = item.init_args, _facts(config)
        args.tags = list(dict.fromkeys([*(args.get("tags") or []), *run_tags(config)]))
        if not args.get("name"):
            args.name = "-".join(facts[k] for k in ("dataset", "fold", "backbone") if k in facts)
        chosen = args.get("offline") or args.get("mode") or os.environ.get("WANDB_MODE")
        if not chosen and not wandb_key_configured():
            args.mode = "offline"
            log.info("W&B: no API key configured (wandb login, or WANDB_API_KEY); logging offline")
    return found


# --- end of run ---------------------------------------------------------------------------------------------
def finish_wandb(exit_code: int | None = None) -> str | None:
    """End the current W&B run, if any (no-op when wandb was never imported).

    Returns:
        for an offline run, the line that says where it is and the ``wandb sync`` command that uploads it.
    """
    if "wandb" not in sys.modules:
        return None
    import wandb

    run = wandb.run
    if run is None:
        return None
    offline, sync_dir = bool(run.offline), run.settings.sync_dir
    wandb.finish(exit_code=exit_code)
    if offline and sync_dir:
        return f"W&B run saved offline in {sync_dir}\nupload it with: wandb sync {sync_dir}"
    return None


def _wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def extra_callbacks(callbacks: object) -> list[Callback]:
    """The callbacks a W&B run gets on top of the configured ones: ``LearningRateMonitor`` and :class:`WandbMedia`.

    Args:
        callbacks: ``trainer.callbacks`` of the config, parsed (``class_path`` namespaces) or instantiated.

    Returns:
        the ones whose class is not among ``callbacks`` yet.
    """
    have = callbacks if isinstance(callbacks, list | tuple) else [callbacks] if callbacks else []
    classes = [_import(c.get("class_path")) if isinstance(c, Namespace) else type(c) for c in have]

    def present(kind: type) -> bool:
        return any(isinstance(c, type) and issubclass(c, kind) for c in classes)

    extra: list[Callback] = []
    if not present(LearningRateMonitor):
        extra.append(LearningRateMonitor())
    if not present(WandbMedia):
        extra.append(WandbMedia())
    return extra


# --- the resolved config ------------------------------------------------------------------------------------
def log_config(trainer: Trainer, resolved: dict) -> None:
    """Put the fully resolved config in every W&B run of ``trainer`` (a no-op without a ``WandbLogger``).

    The run's W&B config then holds every setting (``model.backbone``, ``data.init_args.fold``, ...) next to the
    hyperparameters Lightning logs itself, so runs can be filtered and compared by any of them.
    """
    for logger in _wandb_loggers(trainer):
        logger.experiment.config.update(resolved, allow_val_change=True)


# --- media --------------------------------------------------------------------------------------------------
def spectrogram_image(spec: torch.Tensor, cmap: str = "magma") -> np.ndarray:
    """A picture of one spectrogram: channels stacked top to bottom, low frequencies at the bottom of each.

    Args:
        spec: (C, n_mels, frames); each channel is scaled to its own min..max.
        cmap: a matplotlib colormap name.

    Returns:
        (C * n_mels, frames, 3) uint8.
    """
    import matplotlib

    x = spec.detach().float().cpu()
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp_min(1e-8)).flip(1)  # (C, F, frames), high frequencies on top
    rgba = matplotlib.colormaps[cmap](x.reshape(-1, x.shape[-1]).numpy())
    return (rgba[..., :3] * 255).round().astype(np.uint8)


class WandbMedia(Callback):
    """Pictures and tables for a W&B run.

    At the start of ``fit``, ``examples_per_class`` training clips of every class as spectrogram images (the
    frontend's output, before augmentation; the stored spectrograms themselves with ``data.precompute_frontend:
    true``); a multi-label clip is captioned with all its labels (``dog+rain``).
    A multi-label model gets a per-class AP table at the end of ``test`` instead of the confusion matrix. At the end of ``test``, the confusion matrix (a W&B chart) and a
    per-class table (clips, correct, accuracy, most frequent wrong prediction), over the whole test set across
    processes: both read the model's ``test_confusion`` (set by :class:`~audiocls.models.classifier.AudioClassifier`'s
    ``on_test_epoch_end``), nothing is counted here. Does nothing without a ``WandbLogger``.

    Args:
        examples_per_class: clips shown per class at the start.
        max_classes: at most this many classes are shown (the first ones).
    """

    def __init__(self, examples_per_class: int = 2, max_classes: int = 20):
        self.examples_per_class, self.max_classes = examples_per_class, max_classes

    # examples at the start
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers or not trainer.is_global_zero or self.examples_per_class < 1:
            return
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "splits", {}).get("train")
        if dataset is None or not len(dataset):
            return
        task = get_task(getattr(pl_module, "task", DEFAULT_TASK))
        label_sets = [task.classes_of(y) for y in dataset.labels]  # class indices, or the classes of a multi-hot target
        names = getattr(pl_module, "class_names", None) or [
            str(i) for i in range(max(max(s, default=0) for s in label_sets) + 1)
        ]
        picked: list[int] = []
        for label in range(min(len(names), self.max_classes)):
            chosen = set(picked)  # a multi-label clip shown for its first class only
            picked += [i for i, s in enumerate(label_sets) if label in s and i not in chosen][: self.examples_per_class]
        if not picked:
            return
        spec = self._spectrograms(torch.stack([dataset[i][0] for i in picked]), datamodule, pl_module.device)
        if spec is None:
            return
        images = [spectrogram_image(s) for s in spec]
        captions = [
            f"{'+'.join(names[k] for k in label_sets[i])}: {Path(dataset.cache.files[dataset.indices[i]]).name}"
            for i in picked
        ]
        for logger in loggers:
            logger.log_image(key="examples/spectrograms", images=images, caption=captions)

    @staticmethod
    def _spectrograms(inputs: torch.Tensor, datamodule, device: torch.device) -> torch.Tensor | None:
        """The training split's items as spec (N, C, n_mels, frames), or ``None`` when they cannot be drawn.

        Waveforms (N, T) go through the datamodule's frontend; stored spectrograms (N, C, n_mels, frames) of
        ``data.precompute_frontend: true`` are already its output (before normalisation, which is a per-channel
        affine map and so leaves :func:`spectrogram_image` unchanged) and are drawn as they are.
        """
        if inputs.ndim == 4:
            return inputs
        frontend = getattr(datamodule, "frontend", None)
        if inputs.ndim != 2 or frontend is None:
            log.warning(
                "W&B examples left out: training items of shape %s are neither waveforms (T,) with a frontend "
                "nor spectrograms (C, F, T)",
                tuple(inputs.shape[1:]),
            )
            return None
        with torch.no_grad():
            return frontend.to(device)(inputs.to(device))

    # confusion matrix at the end of test
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the model's ``on_test_epoch_end``: its ``test_confusion`` (a torchmetrics state, synced over processes)."""
        if not _wandb_loggers(trainer) or not trainer.is_global_zero:
            return
        figure = get_task(getattr(pl_module, "task", DEFAULT_TASK)).per_class_test_figure(pl_module)
        if figure is not None:  # e.g. multi-label: per-class AP, no confusion matrix
            name, values = figure
            names = list(pl_module.class_names)
            rows = [[n, None if a != a else float(a)] for n, a in zip(names, values.tolist(), strict=True)]
            for logger in _wandb_loggers(trainer):
                logger.log_table(key="test/per_class", columns=["class", name], data=rows)
            return
        counts = getattr(pl_module, "test_confusion", None)
        if not isinstance(counts, torch.Tensor) or counts.ndim != 2 or counts.numel() == 0:
            return  # a model without the classifier's confusion matrix: leave the chart out rather than guess
        self._log_confusion(trainer, pl_module, counts.long().cpu())

    def _log_confusion(self, trainer: Trainer, pl_module: LightningModule, counts: torch.Tensor) -> None:
        import wandb

        k = counts.shape[0]
        names = list(getattr(pl_module, "class_names", None) or [])
        names = names if len(names) == k else [str(i) for i in range(k)]
        y_true = [t for t in range(k) for p in range(k) for _ in range(int(counts[t, p]))]
        y_pred = [p for t in range(k) for p in range(k) for _ in range(int(counts[t, p]))]
        rows = []
        for t in range(k):
            clips, correct = int(counts[t].sum()), int(counts[t, t])
            wrong = counts[t].clone()
            wrong[t] = 0
            confused = names[int(wrong.argmax())] if int(wrong.sum()) else ""
            rows.append([names[t], clips, correct, correct / clips if clips else float("nan"), confused])
        for logger in _wandb_loggers(trainer):
            logger.log_table(
                key="test/per_class",
                columns=["class", "clips", "correct", "accuracy", "most confused with"],
                data=rows,
            )
            if y_true:
                chart = wandb.plot.confusion_matrix(
                    y_true=y_true, preds=y_pred, class_names=names, title="test confusion matrix"
                )
                logger.experiment.log({"test/confusion_matrix": chart})
