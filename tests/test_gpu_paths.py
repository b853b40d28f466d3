"""What only a CUDA device can show (``gpu`` marker; benchmarks/gpu_check.sh runs them on a bare GPU machine):
predict on CUDA agrees with the CPU, a fit resumed on CUDA continues its run, bf16-true trains on CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiocls.cli import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _gpu_args(tiny_args: list[str]) -> list[str]:
    return [*(a for a in tiny_args if not a.startswith("--trainer.accelerator")), "--trainer.accelerator=gpu"]


def _last(tmp_path: Path) -> Path:
    (last,) = tmp_path.glob("runs/audiocls/version_0/checkpoints/last.ckpt")
    return last


def test_predict_on_cuda_agrees_with_the_cpu(tiny_args, tiny_root, tmp_path, capsys):
    assert main(["fit", *_gpu_args(tiny_args), "--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]) == 0
    files = sorted((tiny_root / "audio").glob("*.wav"))[:6]
    capsys.readouterr()
    scores = {}
    for device in ("cpu", "cuda"):
        args = ["predict", "--ckpt_path", str(_last(tmp_path)), "--files", *map(str, files), "--format", "json"]
        assert main([*args, "--top_k", "4", "--device", device]) == 0
        scores[device] = json.loads(capsys.readouterr().out)
    for cpu, cuda in zip(scores["cpu"], scores["cuda"], strict=True):  # every class (top 4 of 4), by name
        on_cpu = {c["label"]: c["probability"] for c in cpu["top"]}
        assert {c["label"]: c["probability"] for c in cuda["top"]} == pytest.approx(on_cpu, abs=1e-3)


def test_resume_on_cuda_continues_the_run(tiny_args, tmp_path):
    args = ["fit", *_gpu_args(tiny_args), "--trainer.limit_train_batches=3"]
    assert main([*args, "--trainer.max_epochs=1"]) == 0
    first = torch.load(_last(tmp_path), map_location="cpu", weights_only=False)
    assert main([*args, "--trainer.max_epochs=2", "--ckpt_path=last"]) == 0
    assert not (tmp_path / "runs" / "audiocls" / "version_1").exists()  # the same run folder
    resumed = torch.load(_last(tmp_path), map_location="cpu", weights_only=False)
    assert (first["global_step"], resumed["global_step"]) == (3, 6)
    assert resumed["lr_schedulers"] == [] or resumed["lr_schedulers"][0]["last_epoch"] == 6


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed"])
def test_bf16_on_cuda_trains_and_tests(precision, tiny_args, tmp_path):
    args = ["fit", *_gpu_args(tiny_args), f"--trainer.precision={precision}", "--trainer.max_epochs=1"]
    assert main([*args, "--trainer.limit_train_batches=3"]) == 0
    (metrics,) = tmp_path.glob("runs/**/metrics.json")
    assert torch.isfinite(torch.tensor(json.loads(metrics.read_text())["test/loss"]))
