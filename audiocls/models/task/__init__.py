"""The task a model is trained for, as a type: everything that differs between single-label and multi-label.

``model.task`` is the config string (linked from the datamodule, which chooses it, and kept in checkpoints'
hyperparameters); :func:`get_task` turns it into a :class:`Task`, which owns the loss, the activation, the metric
set (train/val/test), the monitored key and its mode, the headline figure, the curve panels, the prediction format
and the figures of the cv/ensemble reports. ``predictions.npz`` files carry the task's name (:func:`saved_task`
reads it back). A new task is one new :class:`Task` subclass registered in :data:`TASKS`.

The metric objects live on the LightningModule (so ``.to()``, DDP sync and checkpoints see them, under the same
state_dict keys as before the Task existed); a Task is stateless and its hooks take the module.
"""

from __future__ import annotations

import numpy as np

from audiocls.errors import ConfigError
from audiocls.models.task.base import Task
from audiocls.models.task.multiclass import Multiclass
from audiocls.models.task.multilabel import Multilabel

__all__ = ["Task", "Multiclass", "Multilabel", "TASKS", "DEFAULT_TASK", "get_task", "saved_task"]

#: every task by its config name
TASKS: dict[str, type[Task]] = {t.name: t for t in (Multiclass, Multilabel)}
#: the task of a model or file that names none
DEFAULT_TASK = Multiclass.name


def get_task(name: str) -> Task:
    """The :class:`Task` of a config name (``model.task``); a :class:`ConfigError` lists the names."""
    if name not in TASKS:
        raise ConfigError(f"model.task={name!r} must be one of {list(TASKS)}")
    return TASKS[name]()


def saved_task(data) -> Task:
    """The task of a loaded ``predictions.npz``: its ``task`` entry. Files written before the entry existed hold
    multi-hot (N, K) labels for a multi-label model and class indices (N,) otherwise."""
    if "task" in data:
        return get_task(str(data["task"]))
    return get_task("multilabel" if np.asarray(data["labels"]).ndim == 2 else "multiclass")
