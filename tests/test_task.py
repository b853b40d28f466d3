"""The task type: one class per task, its curve panels, and the task name carried by checkpoints, the cv fold's
``predictions.npz`` and exported models, read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiocls.cli import main
from audiocls.commands import cv
from audiocls.errors import ConfigError
from audiocls.models.task import TASKS, Multiclass, Multilabel, get_task, saved_task
from audiocls.training.curves import plot_curves
from tests.test_multilabel import _fit_args


def _drawn_panels(monkeypatch) -> list:
    """Records every line matplotlib draws from now on; :func:`_titled` names their panels."""
    from matplotlib.axes import Axes

    drawn = []
    real_plot = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, x, y, **kw: drawn.append((ax, list(y))) or real_plot(ax, x, y, **kw))
    return drawn


def _titled(drawn: list) -> list[tuple[str, list[float]]]:
    """``(panel title, y values)`` of the drawn lines (a panel gets its title after its lines)."""
    return sorted((ax.get_title(), y) for ax, y in drawn)


def test_registry_names_each_task_once():
    assert {"multiclass": Multiclass, "multilabel": Multilabel} == TASKS
    assert {(t.monitor, t.mode, t.headline) for t in (Multiclass(), Multilabel())} == {
        ("val/acc", "max", "acc"),
        ("val/mAP", "max", "mAP"),
    }
    with pytest.raises(ConfigError, match="must be one of"):
        get_task("regression")


def test_multilabel_curves_plot_val_map(tmp_path, monkeypatch):
    """A multi-label run logs val/mAP, not val/acc: its curves.png validation panel plots val/mAP."""
    rows = [
        "epoch,step,train/loss_epoch,val/mAP,val/f1_micro",
        "0,2,0.9,,",
        "0,2,,0.4,0.3",
        "1,5,0.7,,",
        "1,5,,0.6,0.5",
    ]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert get_task("multilabel").curve_panels == (("train/loss_epoch", "train loss"), ("val/mAP", "val mAP"))
    drawn = _drawn_panels(monkeypatch)
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png", task="multilabel") == tmp_path / "curves.png"
    assert _titled(drawn) == [("train loss", [0.9, 0.7]), ("val mAP", [0.4, 0.6])]


def test_saved_predictions_name_their_task(tmp_path):
    """predictions.npz names its task; files from before the entry existed are read by their labels' shape."""
    probs = np.full((2, 3), 0.5)
    np.savez(tmp_path / "new.npz", probs=probs, labels=np.zeros((2, 3), int), task=np.array("multiclass"))
    assert saved_task(np.load(tmp_path / "new.npz")).name == "multiclass"  # the entry wins over the shape
    np.savez(tmp_path / "old.npz", probs=probs, labels=np.zeros((2, 3), int))
    assert saved_task(np.load(tmp_path / "old.npz")).name == "multilabel"
    np.savez(tmp_path / "old1.npz", probs=probs, labels=np.zeros(2, int))
    assert saved_task(np.load(tmp_path / "old1.npz")).name == "multiclass"


def test_a_multilabel_fit_carries_its_task_everywhere(tmp_path, monkeypatch):
    """One multi-label fit: curves.png plots val/mAP, and the checkpoint, the cv callback's predictions.npz and an
    exported model name the task, read back by their readers."""
    from audiocls.commands.export import read_metadata
    from audiocls.training.checkpoints import load_checkpoint

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "fold"
    callback = {"class_path": "audiocls.commands.cv_callback.TestFoldEachEpoch", "init_args": {"dirpath": str(out)}}
    drawn = _drawn_panels(monkeypatch)
    assert (
        main(
            _fit_args(
                tmp_path / "poly", 2, [f"--trainer.callbacks+={json.dumps(callback)}", "--data.validate_test_fold=true"]
            )
        )
        == 0
    )
    val = [y for title, y in _titled(drawn) if title == "val mAP"]
    assert len(val) == 1 and len(val[0]) == 2  # the validation panel: val/mAP of both epochs

    loaded = load_checkpoint("ckpt/last.ckpt")
    assert loaded.model.task == "multilabel" and isinstance(loaded.model.task_type, Multilabel)
    data = np.load(out / cv.PREDICTIONS)
    assert str(data["task"]) == "multilabel" and saved_task(data).name == "multilabel"
    exported = tmp_path / "model.pt"
    assert main(["export", "--ckpt_path=ckpt/last.ckpt", "--format=torchscript", f"--out={exported}"]) == 0
    meta = read_metadata(exported)
    assert meta["task"] == "multilabel" and meta["activation"] == "sigmoid"


def test_trackers_ask_the_task_for_a_targets_classes_and_its_per_class_test_figure():
    """W&B's example picker and its test table used a rank test and a ``multilabel`` flag; the Task answers now."""
    from types import SimpleNamespace

    import torch

    from audiocls.models.task import get_task

    single, multi = get_task("multiclass"), get_task("multilabel")
    assert single.classes_of(torch.tensor(3)) == (3,) and single.classes_of(2) == (2,)
    assert multi.classes_of(torch.tensor([0.0, 1.0, 0.0, 1.0])) == (1, 3)
    ap = torch.tensor([0.5, 1.0])
    assert multi.per_class_test_figure(SimpleNamespace(test_per_class_ap=ap)) == ("AP", ap)
    assert single.per_class_test_figure(SimpleNamespace(test_per_class_ap=ap)) is None  # it has a confusion matrix
