"""Clips per second the training DataLoader delivers on ESC-10: cold cache, warm cache, and no cache.

    .venv/bin/python benchmarks/data_loading.py --root ~/data/ESC-50-master --rates 44100 22050

cold  = first epoch of a fresh run: decode + resample every file into the cache, then iterate the loader
warm  = a later run (or epoch): the cache is memory-mapped, nothing is decoded
none  = what every epoch would cost without a cache: decode + resample + crop each training clip
Each figure is given per wall-clock second and per CPU second of this process (all its threads): on a
machine shared with other jobs the CPU-second figure is the stable one. All three are measured in one process, on the same files, with ``num_workers=0`` (the cache build decodes in
``min(4, cpu count)`` threads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.io import load_audio, pad_or_crop


def _epoch(dm: ESC50DataModule) -> int:
    n = 0
    for wave, _ in dm.train_dataloader():
        n += len(wave)
    return n


def run(root: Path, sample_rate: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(clips per wall second, clips per CPU second) for the cold, warm and uncached epoch."""
    with tempfile.TemporaryDirectory() as cache:
        kwargs = dict(esc10=True, sample_rate=sample_rate, batch_size=32, num_workers=0, cache_dir=cache)
        t, c = time.perf_counter(), time.process_time()
        dm = ESC50DataModule(root, **kwargs)
        dm.prepare_data()
        dm.setup("fit")
        n = _epoch(dm)
        cold = (n / (time.perf_counter() - t), n / (time.process_time() - c))
        warm = []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            dm = ESC50DataModule(root, **kwargs)
            dm.setup("fit")
            n = _epoch(dm)
            warm.append((n / (time.perf_counter() - t), n / (time.process_time() - c)))
        files = [dm.list_clips()[i].path for i in dm.splits["train"].indices]
        t, c = time.perf_counter(), time.process_time()
        for f in files:
            pad_or_crop(load_audio(f, sample_rate), dm.clip_samples)
        none = (len(files) / (time.perf_counter() - t), len(files) / (time.process_time() - c))
    return {"cold": cold, "warm": max(warm), "none": none}


def _fmt(rates: tuple[float, float]) -> str:
    return f"{rates[0]:.0f} ({rates[1]:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=os.environ.get("AUDIOCLS_ESC50_ROOT"),
        required="AUDIOCLS_ESC50_ROOT" not in os.environ,
    )
    parser.add_argument("--rates", type=int, nargs="+", default=[44100, 22050])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    print("clips per wall second (per CPU second of this process)")
    print(
        "| sample rate | cold cache (build + epoch 1) | warm cache (later epochs) | no cache (every epoch) | warm / none (CPU) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for sr in args.rates:
        r = run(args.root, sr, args.repeats)
        print(
            f"| {sr} Hz | {_fmt(r['cold'])} | {_fmt(r['warm'])} | {_fmt(r['none'])} "
            f"| {r['warm'][1] / r['none'][1]:.0f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
