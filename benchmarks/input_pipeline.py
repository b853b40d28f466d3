"""An epoch through the real loaders vs the same epoch on spectrograms already in memory, as time ratios.

    .venv/bin/python benchmarks/input_pipeline.py                      # ESC-10 fold 1, regnetx_002, 44.1 kHz
    .venv/bin/python benchmarks/input_pipeline.py --loaders stored     # only data.precompute_frontend: true
    .venv/bin/python benchmarks/input_pipeline.py --device cuda --model densenet201 --workers 8

A loader epoch is what ``audiocls fit`` does per training epoch: every batch of the datamodule's training
DataLoader (decoded-audio cache, random crops), to the device, the datamodule's device hook in training mode, the
model forward, cross-entropy, backward and an Adam step. Two loaders: ``batch`` computes the paper's three log-mel
channels at 128 x 250 on every batch and applies the augmentation of configs/esc10.yaml (the path waveform
augmentation needs); ``stored`` is ``data.precompute_frontend: true`` (what configs/esc10.yaml sets): spectrograms
computed once at setup, only the spectrogram-side augmentation per batch. "memory" trains the same number of
batches on spectrograms computed beforehand and held on the device, so only loading, frontend and augmentation
differ. The modes alternate epoch by epoch so that other load slows all alike; each ratio is of summed times,
measured in one run. Near 1: the model sets the pace; "headroom" is the share of a loader epoch spent outside
the model step.
"""

from __future__ import annotations

import argparse
import os
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
from audiocls.errors import ConfigError
from audiocls.models.backbone import build_backbone

REPO = Path(__file__).resolve().parents[1]
ESC50_ROOT = os.environ.get("AUDIOCLS_ESC50_ROOT")  # the ESC-50 release folder (ESC-10 is its subset)


def recipe_augment() -> AugmentConfig:
    """The augmentation block of configs/recipes/cpu.yaml (the CPU recipe)."""
    recipe = yaml.safe_load((REPO / "configs" / "recipes" / "cpu.yaml").read_text())
    block = recipe["data"]["init_args"].get("augment") or {}
    return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in block.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=ESC50_ROOT, required=ESC50_ROOT is None, help="ESC-50 folder (default: $AUDIOCLS_ESC50_ROOT)"
    )
    parser.add_argument(
        "--esc10",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the ESC-10 subset (--no-esc10: every class)",
    )
    parser.add_argument("--model", default="regnetx_002", help="timm model name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (the recipe: 0)")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per mode (2 gave ratios 0.3 apart)")
    parser.add_argument(
        "--loaders",
        nargs="+",
        choices=["batch", "stored"],
        default=["batch", "stored"],
        help="batch: frontend on every batch; stored: data.precompute_frontend (the recipe)",
    )
    parser.add_argument("--precompute", action="store_true", help="the same as --loaders stored")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"--device {args.device}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu"
        )

    loaders = ["stored"] if args.precompute else list(dict.fromkeys(args.loaders))

    torch.set_flush_denormal(True)
    torch.manual_seed(0)

    def datamodule(precompute: bool) -> ESC50DataModule:
        return ESC50DataModule(
            args.root,
            esc10=args.esc10,
            fold=1,
            sample_rate=44100,
            clip_seconds=5.0,
            batch_size=args.batch_size,
            num_workers=args.workers,
            frontend=FrontendConfig.paper(),
            augment=recipe_augment(),
            precompute_frontend=precompute,
        )

    plain = datamodule(False)  # the frontend per batch: the "batch" loader, and the memory epoch's inputs
    plain.prepare_data()  # decode once into the cache, before any timing
    plain.setup("fit")
    dms, stored_setup_s = {}, None
    for name in loaders:
        if name == "batch":
            dms[name] = plain
        else:
            dms[name] = datamodule(True)
            t0 = time.perf_counter()
            dms[name].setup("fit")  # every clip's spectrogram, once
            stored_setup_s = time.perf_counter() - t0
    shape = dict(num_classes=plain.num_classes, in_chans=plain.in_chans)
    try:  # ImageNet weights from the weights folder (AUDIOCLS_WEIGHTS) or timm's cache, as model.pretrained: true
        model, weights = build_backbone(args.model, pretrained=True, **shape), "ImageNet weights"
    except ConfigError:
        model, weights = build_backbone(args.model, **shape), None
    model = model.to(device)
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

    with torch.no_grad():  # the memory epoch's inputs: the same kind of batches, spectrograms made beforehand
        plain.trainer = SimpleNamespace(training=False)
        memory = [plain.on_after_batch_transfer((w.to(device), y.to(device)), 0) for w, y in plain.train_dataloader()]
    for d in dms.values():
        d.trainer = SimpleNamespace(training=True)  # the device hook's training branch (augmentation on)
    model.train()
    for spec, y in memory[:2]:  # warm-up: allocator, kernels
        model_step(spec, y)
    sync()

    timed = {name: 0.0 for name in [*loaders, "memory"]}
    batches = {name: d.train_dataloader() for name, d in dms.items()}
    for _ in range(args.epochs):
        for name, d in dms.items():
            t0 = time.perf_counter()
            for wave, y in batches[name]:
                spec, y = d.on_after_batch_transfer((wave.to(device, non_blocking=True), y.to(device)), 0)
                model_step(spec, y)
            sync()
            timed[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for spec, y in memory:
            model_step(spec, y)
        sync()
        timed["memory"] += time.perf_counter() - t0

    samples = args.epochs * len(memory) * args.batch_size
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(
        f"model={args.model} ({weights or 'random init'}) batch={args.batch_size} "
        f"workers={args.workers} device={args.device} ({where}) precision={args.precision} "
        f"threads={torch.get_num_threads()} loaders={','.join(loaders)} epochs={args.epochs}x{len(memory)} steps"
    )
    label = {"batch": "frontend per batch", "stored": "precompute_frontend, the recipe"}
    if stored_setup_s is not None:
        print(f"setup (split, stored spectrograms): {stored_setup_s:.1f} s")
    print("   ".join(f"{name}: {samples / t:.1f} samples/s" for name, t in timed.items()))
    for name in loaders:
        headroom = 1 - timed["memory"] / timed[name]
        print(f"{name} ({label[name]}): {headroom:.0%} of a loader epoch is outside the model step")
    for name in loaders:
        print(f"epoch time ratio {name}/memory: {timed[name] / timed['memory']:.2f}x  ({label[name]})")


if __name__ == "__main__":
    main()
