"""Every shipped dataset config stacked with each recipe layer, each logger and each callback preset, as users stack
them (``--config configs/<dataset>.yaml --config configs/recipes/<recipe>.yaml ...``), fitted for 2 training steps,
1 validation and 1 test step on tiny generated data in that dataset's real layout, in a working folder with no
development data beside it. The recipes' ImageNet weights come from the weights folder (``AUDIOCLS_WEIGHTS``),
filled here with random tensors by ``audiocls weights add``, exactly as a user fills it.

18 runs cover every (dataset, recipe), (dataset, logger), (dataset, callback), (recipe, logger), (recipe, callback)
and (logger, callback) pair; the full product (108 runs) would find nothing a pair does not. The ``gpu`` variants
(bf16-mixed, 2-GPU DDP) run in ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.cli import main
from audiocls.data.esc50 import ESC10_TARGETS
from tests.test_data_inputs import make_esc50
from tests.test_datasets import make_fsdd, make_gtzan, make_us8k

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASETS = ("esc50", "esc10", "esc10_mixtures", "urbansound8k", "gtzan", "fsdd")
RECIPES = ("cpu", "paper")
LOGGERS = ("csv", "tensorboard", "wandb")
CALLBACKS = ("none", "ema", "early_stopping")
#: the backbone each recipe names, with the weights it asks for (model.pretrained: true)
RECIPE_BACKBONES = {"cpu": "regnetx_002", "paper": "densenet201.tv_in1k"}


def pairwise() -> list[tuple[str, str, str, str]]:
    """(dataset, recipe, logger, callback): 3 runs per dataset, one per logger, covering every pair of factors."""
    runs = []
    for i, dataset in enumerate(DATASETS):
        for j, logger in enumerate(LOGGERS):
            runs.append((dataset, RECIPES[(i + j) % 2], logger, CALLBACKS[(i + j) % 3]))
    return runs


def test_the_runs_cover_every_pair_of_factors():
    runs = pairwise()
    factors = (DATASETS, RECIPES, LOGGERS, CALLBACKS)
    for a in range(4):
        for b in range(a + 1, 4):
            seen = {(run[a], run[b]) for run in runs}
            assert seen == {(x, y) for x in factors[a] for y in factors[b]}, (a, b)


def _write_esc10(root: Path) -> Path:
    """The ESC-50 layout holding the 10 ESC-10 classes (esc10 column True), 2 clips per class and fold."""
    return make_esc50(root, classes=tuple(range(10)), sources=1, takes=2, seconds=0.5, targets=ESC10_TARGETS)


@pytest.fixture(scope="session")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Tiny data in each dataset's real layout, made once for the session."""
    base = tmp_path_factory.mktemp("layouts")
    esc = _write_esc10(base / "ESC-50-master")
    return {
        "esc50": esc,
        "esc10": esc,
        "esc10_mixtures": esc,
        "urbansound8k": make_us8k(base / "UrbanSound8K", per_fold=3),
        "gtzan": make_gtzan(base / "gtzan", per_genre=4),
        "fsdd": make_fsdd(base / "fsdd", speakers=("anna", "bob"), takes=6),
    }


@pytest.fixture(scope="session")
def weights_folder(tmp_path_factory) -> Path:
    """A weights folder holding both recipes' backbones (random tensors), added with ``audiocls weights add``."""
    import timm
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    files = tmp_path_factory.mktemp("downloads")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLS_WEIGHTS", str(folder))
        for name in RECIPE_BACKBONES.values():
            model = timm.create_model(name.split(".")[0], pretrained=False)
            source = files / f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(source))
            assert main(["weights", "add", str(source), "--model", name]) == 0
    return folder


def _logger_args(logger: str, monkeypatch, tmp_path: Path) -> list[str]:
    if logger == "csv":
        return []  # the dataset config's own CSVLogger
    if logger == "wandb":
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
        monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing to reach there
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return ["--config", str(CONFIGS / "logger" / f"{logger}.yaml")]


#: what keeps each run to seconds; the dataset's sample rate, clip length, folds and the recipe's model stay
SMALL = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.enable_progress_bar=false",
    "--data.batch_size=2",
    "--data.num_workers=0",
    "--data.frontend.n_mels=32",
    "--data.frontend.size=[32, 64]",
]


def fit_stack(dataset, recipe, logger, callback, *, root, monkeypatch, tmp_path, extra=()) -> int:
    args = [
        "fit",
        "--config",
        str(CONFIGS / f"{dataset}.yaml"),
        "--config",
        str(CONFIGS / "recipes" / f"{recipe}.yaml"),
    ]
    args += _logger_args(logger, monkeypatch, tmp_path)
    if callback != "none":
        args += ["--config", str(CONFIGS / "callbacks" / f"{callback}.yaml")]
    return main([*args, f"--data.root={root}", *SMALL, *extra])


def _metrics(tmp_path: Path) -> dict[str, float]:
    (found,) = (tmp_path / "runs").rglob("metrics.json")
    return json.loads(found.read_text())


@pytest.mark.parametrize(("dataset", "recipe", "logger", "callback"), pairwise())
def test_shipped_stack_fits_and_tests(
    dataset, recipe, logger, callback, layouts, weights_folder, monkeypatch, tmp_path
):
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(weights_folder))
    assert not (tmp_path.parent / "shared").exists()  # no development data beside the working folder
    code = fit_stack(
        dataset, recipe, logger, callback, root=layouts[dataset], monkeypatch=monkeypatch, tmp_path=tmp_path
    )
    if logger == "wandb":
        import wandb

        wandb.teardown()
    assert code == 0
    metrics = _metrics(tmp_path)
    headline = "test/mAP" if dataset == "esc10_mixtures" else "test/acc"
    assert np.isfinite(metrics[headline]), metrics


# --- the layers reproduce the recorded runs' settings -----------------------------------------------------------
#: the settings of the recorded ESC-10 / FSDD / mixtures runs (docs/RESULTS.md), as their one-file configs typed them
RECORDED = {
    "esc10": {
        "args": [],
        "max_epochs": 30, "val_fraction": 0.03, "label_smoothing": 0.1, "n_mels": 128, "size": [128, 250],
        "widths": (16, 25), "sample_rate": 44100, "clip_seconds": 5.0,
    },
    "fsdd": {
        "args": ["--trainer.max_epochs=20"],
        "max_epochs": 20, "val_fraction": 0.1, "label_smoothing": 0.1, "n_mels": 64, "size": [64, 96],
        "widths": (8, 10), "sample_rate": 8000, "clip_seconds": 1.0,
    },
    "esc10_mixtures": {
        "args": ["--model.label_smoothing=0"],
        "max_epochs": 30, "val_fraction": 0.15, "label_smoothing": 0.0, "n_mels": 128, "size": [128, 250],
        "widths": (16, 25), "sample_rate": 44100, "clip_seconds": 5.0,
    },
}  # fmt: skip


@pytest.mark.parametrize("dataset", sorted(RECORDED))
def test_layered_stacks_resolve_to_the_recorded_recipes(dataset, capsys):
    import yaml

    from audiocls.audio.augment import mask_width

    want = RECORDED[dataset]
    args = ["fit", "--config", str(CONFIGS / f"{dataset}.yaml"), "--config", str(CONFIGS / "recipes" / "cpu.yaml")]
    with pytest.raises(SystemExit) as exc:
        main([*args, *want["args"], "--print_config"])
    assert exc.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    trainer, model, data = config["trainer"], config["model"], config["data"]["init_args"]
    assert (trainer["accelerator"], trainer["devices"], trainer["max_epochs"]) == ("cpu", 1, want["max_epochs"])
    assert (model["backbone"], model["pretrained"], model["weights"]) == ("regnetx_002", True, None)
    assert model["label_smoothing"] == want["label_smoothing"]
    assert model["optimizer"] == {"class_path": "torch.optim.AdamW", "init_args": {**model["optimizer"]["init_args"], "lr": 0.001, "weight_decay": 0.01}}  # fmt: skip
    # CosineAnnealingLR(T_max = every step of the run, eta_min 0), per step: WarmupCosine without warmup
    assert model["scheduler"]["class_path"] == "audiocls.models.schedules.WarmupCosine"
    assert model["scheduler"]["init_args"] == {"total_steps": None, "warmup": 0.0, "final_lr": 0.0, "last_epoch": -1}
    assert model["scheduler_interval"] == "step" and config["seed_everything"] == 0
    assert (data["batch_size"], data["num_workers"], data["normalize"], data["precompute_frontend"]) == (32, 0, "train", True)  # fmt: skip
    assert (data["val_fraction"], data["sample_rate"], data["clip_seconds"]) == (
        want["val_fraction"], want["sample_rate"], want["clip_seconds"])  # fmt: skip
    front, aug = data["frontend"], data["augment"]
    assert (front["windows_ms"], front["hops_ms"], front["n_fft"]) == ([25.0, 50.0, 100.0], [10.0, 25.0, 50.0], None)
    assert (front["n_mels"], front["size"], front["log"], front["eps"]) == (want["n_mels"], want["size"], "ln", 1e-6)
    assert (aug["time_roll"], aug["freq_masks"], aug["time_masks"]) == (1.0, 2, 2)
    widths = (
        mask_width(aug["freq_mask_width"], front["size"][0]),
        mask_width(aug["time_mask_width"], front["size"][1]),
    )
    assert widths == want["widths"]
    assert aug["pitch_shift"] is None and aug["time_stretch"] is None and aug["gain_db"] == 0.0


# --- the GPU variants: benchmarks/gpu_check.sh runs them on a CUDA machine -----------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("recipe", RECIPES)
def test_gpu_bf16_stack(recipe, layouts, weights_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCLS_WEIGHTS", str(weights_folder))
    extra = ["--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.precision=bf16-mixed"]
    assert fit_stack("esc50", recipe, "csv", "ema", root=layouts["esc50"], monkeypatch=monkeypatch, tmp_path=tmp_path, extra=extra) == 0  # fmt: skip
    assert np.isfinite(_metrics(tmp_path)["test/acc"])


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_gpu_ddp_stack(layouts, weights_folder, tmp_path):
    """Two GPU processes as a user starts them (the audiocls command; Lightning launches the second process)."""
    import os
    import subprocess
    import sys

    args = ["fit", "--config", str(CONFIGS / "esc50.yaml"), "--config", str(CONFIGS / "recipes" / "paper.yaml")]
    args += ["--config", str(CONFIGS / "trainer" / "ddp.yaml"), "--trainer.devices=2", "--trainer.precision=bf16-mixed"]
    args += [f"--data.root={layouts['esc50']}", *SMALL]
    env = {**os.environ, "AUDIOCLS_WEIGHTS": str(weights_folder)}
    done = subprocess.run([sys.executable, "-m", "audiocls.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "effective batch 4 clips per optimizer step" in done.stderr + done.stdout
    assert np.isfinite(_metrics(tmp_path)["test/acc"])


def test_written_files_sound(layouts):
    """The generated layouts hold decodable audio (a broken generator would make every run above vacuous)."""
    some = next(layouts["fsdd"].glob("recordings/*.wav"))
    assert sf.info(str(some)).samplerate == 8000


@pytest.mark.parametrize(
    ("dataset", "fetch"),
    [
        ("esc10", "audiocls data download esc50 --root ~/data, then --data.root ~/data/ESC-50-master"),
        ("urbansound8k", "audiocls data download urbansound8k --root ~/data, then --data.root ~/data/UrbanSound8K"),
        ("gtzan", "audiocls data download gtzan --root ~/data, then --data.root ~/data)"),
        ("fsdd", "audiocls data download fsdd --root ~/data, then --data.root ~/data/free-spoken-digit-dataset-master"),
    ],
)
def test_a_stack_without_data_root_says_how_to_fetch_the_data(dataset, fetch, capsys):
    """Dataset configs ship data.root: null; the one line names the download command and the folder to pass."""
    args = ["fit", "--config", str(CONFIGS / f"{dataset}.yaml"), "--config", str(CONFIGS / "recipes" / "cpu.yaml")]
    assert main(args) == 2
    text = capsys.readouterr().err
    err = [
        line for line in text.splitlines() if line.startswith("audiocls")
    ]  # (pytest's argv draws a Lightning warning)
    assert (
        "Traceback" not in text
        and len(err) == 1
        and err[0].startswith("audiocls: error: data.root is not set: pass --data.root DIR")
    ), err
    assert fetch in err[0]
