"""An epoch through the real loader vs the same epoch on spectrograms already in memory, as a time ratio.

    .venv/bin/python benchmarks/input_pipeline.py                      # ESC-10 fold 1, regnetx_002, 44.1 kHz
    .venv/bin/python benchmarks/input_pipeline.py --precompute         # with data.precompute_frontend on
    .venv/bin/python benchmarks/input_pipeline.py --device cuda --model densenet201 --workers 8

"loader" is what ``audiocls fit`` does per training epoch: every batch of the datamodule's training DataLoader
(decoded-audio cache, random crops), to the device, the datamodule's device hook in training mode (the paper's
three log-mel channels at 128 x 250 and the augmentation of configs/esc10.yaml, or with ``--precompute`` the
stored spectrograms and the spectrogram-side augmentation only), the model forward, cross-entropy, backward and
an Adam step. "memory" trains the same number of batches on spectrograms computed beforehand and held on the
device, so only loading, frontend and augmentation differ. The two alternate epoch by epoch so that other load
slows both alike; the ratio is of the summed times. Near 1: the model sets the pace; "headroom" is the share
of a loader epoch spent outside the model step.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import yaml

from audiocls.audio.augment import AugmentConfig
from audiocls.audio.frontend import FrontendConfig
from audiocls.data.esc50 import ESC50DataModule
from audiocls.models.backbone import build_backbone

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = {"regnetx_002": SHARED / "weights" / "regnetx_002.hailo_in1k.safetensors"}


def recipe_augment() -> AugmentConfig:
    """The augmentation block of configs/esc10.yaml (the CPU recipe)."""
    block = yaml.safe_load((REPO / "configs" / "esc10.yaml").read_text())["data"]["init_args"].get("augment") or {}
    return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in block.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED / "datasets" / "esc10"), help="ESC-50 layout folder")
    parser.add_argument("--model", default="regnetx_002", help="timm model name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (the recipe: 0)")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per mode (2 gave ratios 0.3 apart)")
    parser.add_argument("--precompute", action="store_true", help="data.precompute_frontend on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"--device {args.device}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu"
        )

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    dm = ESC50DataModule(
        args.root,
        esc10=True,
        fold=1,
        sample_rate=44100,
        clip_seconds=5.0,
        batch_size=args.batch_size,
        num_workers=args.workers,
        frontend=FrontendConfig.paper(),
        augment=recipe_augment(),
        precompute_frontend=args.precompute,
    )
    dm.prepare_data()  # decode once into the cache, before any timing
    t0 = time.perf_counter()
    dm.setup("fit")  # with --precompute: every clip's spectrogram, once
    setup_s = time.perf_counter() - t0
    dm.trainer = SimpleNamespace(training=True)  # the device hook's training branch (augmentation on)
    weights = WEIGHTS.get(args.model)
    weights = weights if weights is not None and weights.is_file() else None
    model = build_backbone(args.model, num_classes=dm.num_classes, in_chans=dm.in_chans, weights=weights).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(enabled=args.precision == "16")

    def model_step(spec: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(spec), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    loader = dm.train_dataloader()
    with torch.no_grad():  # the memory epoch's inputs: the same kind of batches, spectrograms made beforehand
        dm.trainer = SimpleNamespace(training=False)
        memory = [dm.on_after_batch_transfer((w.to(device), y.to(device)), 0) for w, y in loader]
        dm.trainer = SimpleNamespace(training=True)
    model.train()
    for spec, y in memory[:2]:  # warm-up: allocator, kernels
        model_step(spec, y)
    sync()

    timed = {"loader": 0.0, "memory": 0.0}
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for wave, y in loader:
            spec, y = dm.on_after_batch_transfer((wave.to(device, non_blocking=True), y.to(device)), 0)
            model_step(spec, y)
        sync()
        timed["loader"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for spec, y in memory:
            model_step(spec, y)
        sync()
        timed["memory"] += time.perf_counter() - t0

    samples = args.epochs * len(memory) * args.batch_size
    rate = {k: samples / v for k, v in timed.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(
        f"model={args.model} ({'weights ' + weights.name if weights else 'random init'}) batch={args.batch_size} "
        f"workers={args.workers} device={args.device} ({where}) precision={args.precision} "
        f"threads={torch.get_num_threads()} precompute={args.precompute} epochs={args.epochs}x{len(memory)} steps"
    )
    print(f"setup (split{', stored spectrograms' if args.precompute else ''}): {setup_s:.1f} s")
    print(f"loader: {rate['loader']:.1f} samples/s   memory: {rate['memory']:.1f} samples/s")
    print(f"headroom: {1 - timed['memory'] / timed['loader']:.0%} of a loader epoch is outside the model step")
    print(f"epoch time ratio loader/memory: {timed['loader'] / timed['memory']:.2f}x")


if __name__ == "__main__":
    main()
