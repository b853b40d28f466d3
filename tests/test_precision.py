"""Mixed precision through ``trainer.precision``: the model runs in bf16/fp16, the spectrogram frontend in float32."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from audiocls.audio.frontend import FrontendConfig, build_frontend
from audiocls.cli import main
from audiocls.training.cli import run_cli

from .conftest import TINY_FRONTEND


class DtypeProbe(Callback):
    """Records the dtype and device of the spectrogram batch and of the model's logits during training."""

    def __init__(self):
        self.spec: tuple[torch.dtype, str] | None = None
        self.logits: torch.dtype | None = None
        self._hook = None

    def on_train_start(self, trainer, pl_module):
        self._hook = pl_module.register_forward_hook(lambda _m, _i, out: setattr(self, "logits", out.dtype))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.spec = (batch[0].dtype, batch[0].device.type)  # after the datamodule's device hook: the frontend output

    def on_train_end(self, trainer, pl_module):
        self._hook.remove()


def test_frontend_stays_float32_under_autocast():
    frontend = build_frontend(FrontendConfig(**TINY_FRONTEND), 8000)
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    reference = frontend(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = frontend(wave)
    assert spec.dtype == torch.float32
    torch.testing.assert_close(spec, reference)


def test_bf16_mixed_runs_the_model_in_bf16_and_the_frontend_in_float32(tiny_args):
    probe = DtypeProbe()
    args = ["fit", *tiny_args, "--trainer.precision=bf16-mixed", "--trainer.fast_dev_run=true"]
    cli = run_cli(args, trainer_defaults={"callbacks": [probe]})
    assert cli.trainer.precision == "bf16-mixed"
    assert probe.spec == (torch.float32, "cpu")
    assert probe.logits == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # master weights stay float32


def _fit_acc(tiny_root, precision: str, tmp_path) -> float:
    args = [
        "fit",
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.max_epochs=15",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.precision={precision}",
        f"--trainer.logger.init_args.name={precision}",
        "--model.backbone=mobilenetv3_small_050",
        "--model.optimizer=torch.optim.AdamW",
        "--model.optimizer.lr=0.003",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        "--data.num_classes=4",
        "--data.clips_per_fold=8",
        "--data.seconds=1.0",
        "--data.sample_rate=8000",
        "--data.batch_size=16",
        "--data.num_workers=0",
        '--data.frontend={"n_mels": 64, "size": [64, 64]}',
    ]
    assert main(args) == 0
    return json.loads(next((tmp_path / "runs" / precision).rglob("metrics.json")).read_text())["test/acc"]


@pytest.mark.slow
def test_bf16_mixed_learns_as_well_as_float32(tiny_root, tmp_path):
    """tests/test_training.py's run (4 classes, chance 0.25) in float32 and in bf16-mixed: same seed, data and
    model; both at least twice chance and within 0.15 of each other (measured here: 0.69 and 0.63)."""
    fp32 = _fit_acc(tiny_root, "32-true", tmp_path)
    bf16 = _fit_acc(tiny_root, "bf16-mixed", tmp_path)
    assert fp32 >= 0.5 and bf16 >= 0.5, (fp32, bf16)  # twice chance
    assert abs(fp32 - bf16) <= 0.15, (fp32, bf16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_16_mixed_on_cuda_runs_the_frontend_on_the_gpu(tiny_args, tmp_path):
    probe = DtypeProbe()
    args = [a for a in tiny_args if not a.startswith("--trainer.accelerator")]
    args = ["fit", *args, "--trainer.accelerator=gpu", "--trainer.precision=16-mixed", "--trainer.max_epochs=2"]
    cli = run_cli(args, trainer_defaults={"callbacks": [probe]})
    assert probe.spec == (torch.float32, "cuda")  # the waveform batch moved to the GPU and became a spectrogram there
    assert probe.logits == torch.float16
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert cli.trainer.strategy.root_device.type == "cuda"
    # the reported figure is sklearn's on the trained model's outputs, recomputed outside Lightning (same autocast)
    from sklearn.metrics import accuracy_score

    dm, model = cli.datamodule, cli.model.eval()
    test = dm.splits["test"]
    waves = torch.stack([test[i][0] for i in range(len(test))]).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        pred = model(dm.frontend.to("cuda")(waves)).argmax(1).cpu().numpy()
    assert metrics["test/acc"] == pytest.approx(accuracy_score(test.labels, pred))


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_true_half_precision_fits_with_the_frontend_in_float32(tiny_args, precision):
    """``bf16-true``/``16-true`` cast the weights to half: the float32 spectrogram is cast to the weights' dtype
    at the model's input, after the frontend; training, validation (the sanity check) and the test all run."""
    probe = DtypeProbe()
    args = ["fit", *tiny_args, f"--trainer.precision={precision}", "--trainer.max_steps=2"]
    args += ["--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=1", "--trainer.limit_test_batches=1"]
    cli = run_cli(args, trainer_defaults={"callbacks": [probe]})
    half = {"bf16-true": torch.bfloat16, "16-true": torch.float16}[precision]
    assert cli.trainer.global_step == 2
    assert probe.spec[0] == torch.float32  # the frontend's output
    assert probe.logits == half
    assert {p.dtype for p in cli.model.parameters()} == {half}
    assert "test/acc" in cli.trainer.callback_metrics
