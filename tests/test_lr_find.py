"""``audiocls lr_find``: Lightning's LR finder on the injected optimizer, through ``AudioClassifier.lr``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from audiocls.cli import main
from audiocls.commands import lr_find
from audiocls.models.classifier import AudioClassifier


def test_model_lr_overrides_the_injected_optimizer_and_the_scheduler_starts_there():
    model = AudioClassifier(
        "test_resnet", num_classes=4, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 10),
    )  # fmt: skip
    assert model.configure_optimizers()["optimizer"].param_groups[0]["lr"] == 1e-3  # None: the optimizer's own
    model.lr = 0.05
    conf = model.configure_optimizers()
    assert {g["lr"] for g in conf["optimizer"].param_groups} == {0.05}
    assert conf["lr_scheduler"]["scheduler"].base_lrs == [0.05]


def test_lr_find_prints_a_suggestion_and_saves_the_plot(tiny_args, tmp_path, capsys, monkeypatch):
    seen = {}
    real = lr_find.find_lr

    def spy(*args, **kwargs):
        seen["finder"] = real(*args, **kwargs)
        return seen["finder"]

    monkeypatch.setattr(lr_find, "find_lr", spy)
    out = tmp_path / "plots" / "lr.png"
    args = [*tiny_args, "--num_training=30", "--min_lr=1e-5", "--max_lr=0.1", f"--out={out}"]
    assert main(["lr_find", *args]) == 0
    captured = capsys.readouterr()
    suggested = float(re.search(r"suggested lr: (\S+)", captured.out).group(1))
    lrs = seen["finder"].results["lr"]
    assert len(lrs) > 12 and lrs[0] == pytest.approx(1e-5, rel=0.5) and lrs[-1] > 50 * lrs[0]  # the lr did rise
    # the suggestion, computed here from the recorded curve: the lr of the steepest descent of the loss over the lr,
    # the first 10 and the last point left out (Lightning's default), non-finite losses dropped
    lr, loss = np.array(lrs[10:-1]), np.array(seen["finder"].results["loss"][10:-1])
    finite = np.isfinite(loss)
    slope = np.gradient(loss[finite], lr[finite])
    assert suggested == pytest.approx(lr[finite][np.argmin(slope)], rel=1e-5)
    assert np.ptp(loss[finite]) > 0  # a curve that moved: an off-by-one in the index would pick another lr
    assert 1e-5 <= suggested <= 0.1 and suggested == pytest.approx(seen["finder"].suggestion(), rel=1e-5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in captured.err
    assert "\r" not in captured.err and "Finding best initial lr" not in captured.err  # off a terminal: no bar
    assert "lr range test: 30 steps" in captured.err
    assert not list(tmp_path.glob("runs/**/*.ckpt")) and not list(tmp_path.glob(".lr_find*"))  # nothing kept


@pytest.mark.parametrize(
    ("flags", "needle"),
    [(["--min_lr=1", "--max_lr=0.1"], "0 < min_lr < max_lr"), (["--out=lr.jpg"], "PNG"), (["--num_training=1"], "2")],
)
def test_bad_flags_are_one_line(flags, needle, tiny_args, capsys):
    assert main(["lr_find", *tiny_args, *flags]) == 2
    assert needle in capsys.readouterr().err
