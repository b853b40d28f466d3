"""Schedules sized by the run: no step count in a config, and the schedule ends exactly at the last step."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from audiocls.cli import main
from audiocls.errors import ConfigError
from audiocls.models.schedules import WarmupCosine, takes_total_steps
from audiocls.training.averaging import RunEMA, ema_decay
from audiocls.training.console import effective_batch_line

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _rates(scheduler, optimizer, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_cosine_without_warmup_is_torchs_cosine_annealing():
    a, b = _optimizer(), _optimizer()
    ours = _rates(WarmupCosine(a, total_steps=27), a, 30)
    torchs = _rates(torch.optim.lr_scheduler.CosineAnnealingLR(b, T_max=27, eta_min=0.0), b, 28)
    assert ours[:28] == pytest.approx(torchs, abs=1e-12)
    assert ours[27:] == [0.0, 0.0, 0.0]  # after the last step it stays at the end (torch's would rise again)


def test_warmup_then_cosine_by_hand():
    opt = _optimizer(1.0)
    rates = _rates(WarmupCosine(opt, total_steps=10, warmup=0.2, final_lr=0.1), opt, 11)
    assert rates[:2] == pytest.approx([0.5, 1.0])  # 2 warmup steps: 1/2, 2/2
    # then 8 cosine steps from 1 down to 0.1: step 2 + k has progress k / 8
    assert rates[2:] == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)])


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"warmup": 1.0}, "warmup=1.0"), ({"final_lr": 2.0}, "final_lr=2.0"), ({"total_steps": None}, "total_steps")],
)
def test_warmup_cosine_refuses_bad_settings(setting, message):
    with pytest.raises(ConfigError, match=message):
        WarmupCosine(_optimizer(), **{"total_steps": 10, **setting})


def test_only_schedulers_with_an_unset_total_steps_are_sized():
    from functools import partial

    assert takes_total_steps(WarmupCosine)
    assert takes_total_steps(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=None))
    assert not takes_total_steps(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=50))
    assert not takes_total_steps(partial(torch.optim.lr_scheduler.StepLR, step_size=3))


def _fit_schedule(tiny_args, tmp_path, *extra) -> dict:
    """Fit with the CPU recipe's per-step cosine; the last checkpoint's step count, schedule and final rate."""
    args = [
        *tiny_args,
        "--model.optimizer=torch.optim.SGD",
        "--model.optimizer.lr=0.1",
        "--model.scheduler=audiocls.models.schedules.WarmupCosine",
        "--model.scheduler_interval=step",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
        *extra,
    ]
    assert main(["fit", *args]) == 0
    (last,) = tmp_path.glob("runs/**/checkpoints/last.ckpt")
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    sched = ckpt["lr_schedulers"][0]
    return {
        "global_step": ckpt["global_step"],
        "total_steps": sched["total_steps"],
        "stepped": sched["last_epoch"],
        "final_lr": ckpt["optimizer_states"][0]["param_groups"][0]["lr"],
    }


@pytest.mark.parametrize(
    "extra",
    [
        ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3"],  # 6 steps
        ["--trainer.max_epochs=3", "--trainer.limit_train_batches=2"],  # more epochs, 6 steps too
        ["--trainer.max_epochs=1", "--data.batch_size=2"],  # another batch size
        ["--trainer.max_epochs=2", "--data.val_fraction=0.5"],  # another validation share
        ["--trainer.max_epochs=2", "--trainer.accumulate_grad_batches=2", "--trainer.limit_train_batches=4"],
    ],
    ids=["limit3x2", "limit2x3", "batch2", "val50", "accumulate2"],
)
def test_cosine_ends_exactly_at_the_last_step(extra, tiny_args, tmp_path):
    got = _fit_schedule(tiny_args, tmp_path, *extra)
    assert got["total_steps"] == got["global_step"]  # sized to the steps the run took (Lightning's own count)
    assert got["stepped"] == got["global_step"]
    assert got["final_lr"] == 0.0  # it reached its end at the last step, not before (it would stay at 0) or after


def test_limit_train_batches_sizes_the_schedule_by_hand(tiny_args, tmp_path):
    got = _fit_schedule(tiny_args, tmp_path, "--trainer.max_epochs=2", "--trainer.limit_train_batches=3")
    assert got["total_steps"] == 6


def test_per_epoch_cosine_is_sized_by_the_epochs(tiny_args, tmp_path):
    got = _fit_schedule(tiny_args, tmp_path, "--trainer.max_epochs=3", "--model.scheduler_interval=epoch")
    assert got["total_steps"] == 3 and got["stepped"] == 3 and got["final_lr"] == 0.0


def test_no_config_types_a_step_count():
    """T_max, total_steps or a decay sized by hand go stale when the data changes: none is typed in a config."""
    typed = []
    for path in CONFIGS.rglob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            key = line.split("#")[0].strip().split(":")[0]
            if key in ("T_max", "total_steps", "decay", "steps_per_epoch"):
                typed.append(f"{path.relative_to(CONFIGS)}:{number}: {line.strip()}")
    assert typed == []


# --- weight averaging sized by the run ---------------------------------------------------------------------------
def test_ema_decay_by_hand():
    assert ema_decay(0.37, 270) == pytest.approx(1 - 1 / 99.9)
    assert ema_decay(0.5, 1000) == pytest.approx(0.998)
    assert ema_decay(0.1, 5) == 0.0  # under 2 steps of memory: the average is the latest weights


def test_run_ema_averages_with_the_decay_of_the_run_length():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

    module = Tiny()
    callback = RunEMA(memory=0.5)
    callback.setup(SimpleNamespace(estimated_stepping_batches=40), module, "fit")
    assert callback.decay == pytest.approx(0.95)  # 1 - 1 / (0.5 * 40)
    averaged = callback._average_model
    with torch.no_grad():
        module.weight.fill_(1.0)
        averaged.update_parameters(module)  # the first update copies
        module.weight.fill_(3.0)
        averaged.update_parameters(module)
    assert averaged.module.weight.item() == pytest.approx(0.95 * 1.0 + 0.05 * 3.0)


def test_run_ema_refuses_a_memory_outside_the_run():
    with pytest.raises(ConfigError, match="memory=1.5"):
        RunEMA(memory=1.5)


# --- the effective batch under DDP --------------------------------------------------------------------------------
def test_effective_batch_is_printed_when_processes_multiply_the_batch():
    line = effective_batch_line(SimpleNamespace(world_size=4, accumulate_grad_batches=1), 32)
    assert line.startswith("effective batch 128 clips per optimizer step: data.batch_size=32 x 4 processes")
    line = effective_batch_line(SimpleNamespace(world_size=2, accumulate_grad_batches=3), 8)
    assert line.startswith("effective batch 48 clips per optimizer step: data.batch_size=8 x 2 processes x 3 accum")
    assert effective_batch_line(SimpleNamespace(world_size=1, accumulate_grad_batches=1), 32) is None
