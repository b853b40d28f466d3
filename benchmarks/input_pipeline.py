"""Input-pipeline headroom: training samples/s with the real loader vs the same batches already in memory.

    .venv/bin/python benchmarks/input_pipeline.py --root ../shared/datasets/esc10 --esc10
    .venv/bin/python benchmarks/input_pipeline.py --root ~/data/ESC-50 --device cuda --model densenet201 \\
        --batch-size 32 --workers 8

One training step is what ``audiocls fit`` does per batch: waveforms to the device, the datamodule's device hook
(the paper's three log-mel channels resized to 128 x 250), the timm model forward, cross-entropy, backward and
an Adam step. "loader" takes each batch from the datamodule's training DataLoader (decoded-audio cache, worker
processes, random crops); "memory" replays batches taken from that same loader beforehand, so only the loading
differs. The two alternate in rounds so a busy machine slows both alike. A loader/memory ratio near 1 means the
model, not loading, sets the pace; well below 1 means the GPU or CPU waits for data.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from audiocls.audio.frontend import FrontendConfig
from audiocls.data.esc50 import ESC50DataModule
from audiocls.models.backbone import build_backbone

PAPER_FRONTEND = FrontendConfig(
    windows_ms=(25.0, 50.0, 100.0), hops_ms=(10.0, 25.0, 50.0), n_fft=4410, n_mels=128, size=(128, 250)
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/datasets/esc10", help="ESC-50 layout folder")
    parser.add_argument("--esc10", action="store_true", help="the ESC-10 subset")
    parser.add_argument("--model", default="mobilenetv3_small_100", help="timm model name (random init)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round and mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"])
    args = parser.parse_args()

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dm = ESC50DataModule(
        args.root,
        esc10=args.esc10,
        fold=1,
        sample_rate=44100,
        clip_seconds=5.0,
        batch_size=args.batch_size,
        num_workers=args.workers,
        frontend=PAPER_FRONTEND,
    )
    dm.prepare_data()  # decode once into the cache, before any timing
    dm.setup("fit")
    model = build_backbone(args.model, num_classes=dm.num_classes, in_chans=dm.in_chans).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(enabled=args.precision == "16")

    def step(wave: torch.Tensor, y: torch.Tensor) -> None:
        wave = wave.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        spec, y = dm.on_after_batch_transfer((wave, y), 0)  # float32 log-mel on the device
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
    stream = iter(loader)

    def next_batch():
        nonlocal stream
        try:
            return next(stream)
        except StopIteration:
            stream = iter(loader)
            return next(stream)

    model.train()
    memory = [next_batch() for _ in range(args.steps)]  # the batches the memory mode replays
    if device.type == "cuda":
        memory = [(w.pin_memory(), y.pin_memory()) for w, y in memory]
    for wave, y in memory[:2]:  # warm-up: allocator, kernels, the frontend's buffers
        step(wave, y)
    sync()

    timed = {"loader": 0.0, "memory": 0.0}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(*next_batch())
        sync()
        timed["loader"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for wave, y in memory:
            step(wave, y)
        sync()
        timed["memory"] += time.perf_counter() - t0

    samples = args.rounds * args.steps * args.batch_size
    rate = {k: samples / v for k, v in timed.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}"
    print(
        f"model={args.model} batch={args.batch_size} workers={args.workers} device={args.device} ({where}) "
        f"precision={args.precision} threads={torch.get_num_threads()} steps={args.rounds}x{args.steps}"
    )
    print(f"loader: {rate['loader']:.2f} samples/s   memory: {rate['memory']:.2f} samples/s")
    print(f"headroom ratio loader/memory: {rate['loader'] / rate['memory']:.3f}")


if __name__ == "__main__":
    main()
