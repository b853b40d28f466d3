"""The frontend's speed settings side by side: clips/s of LogMelFrontend per (projection, chunk_frames) pair.

Every variant runs on the same 32 clips (real ESC-10 clips when the shared dataset folder is there, 5 s at
44.1 kHz, the paper's three channels, no augmentation), in alternating rounds so that other load on the
machine hits all alike; figures are medians, and each variant's time is also printed as a ratio to the first.
The outputs agree to float32 rounding (checked before timing).

    .venv/bin/python benchmarks/frontend_variants.py                                   # banded:256 (the old default) vs the rest
    .venv/bin/python benchmarks/frontend_variants.py --variants banded:256 sparse:128 --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiocls.audio.frontend import FrontendConfig, LogMelFrontend  # noqa: E402
from benchmarks.frontend_speed import SR, clips  # noqa: E402

DEFAULT = ["banded:256", "sparse:256", "sparse:128", "banded:128", "sparse:64"]


def variant(text: str) -> tuple[str, int]:
    """``projection:chunk_frames`` -> ("sparse", 128)."""
    projection, _, chunk = text.partition(":")
    if projection not in ("sparse", "banded") or not chunk.isdigit() or int(chunk) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write projection:chunk_frames, e.g. sparse:128 or banded:256")
    return projection, int(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", type=variant, default=[variant(v) for v in DEFAULT])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    data, source = clips(args.batch)
    wave = torch.from_numpy(data)
    fronts = {f"{p}:{c}": LogMelFrontend(FrontendConfig(), SR, chunk_frames=c, projection=p) for p, c in args.variants}
    times: dict[str, list[float]] = {k: [] for k in fronts}
    with torch.no_grad():
        outs = {k: fe(wave) for k, fe in fronts.items()}  # warm-up, and the outputs to compare
        first = next(iter(outs.values()))
        worst = max(float((o - first).abs().max()) for o in outs.values())
        for _ in range(args.rounds):
            for key, fe in fronts.items():
                t0 = time.perf_counter()
                fe(wave)
                times[key].append(time.perf_counter() - t0)
    print(
        f"data: {args.batch} x 5 s at {SR} Hz ({source}); {torch.get_num_threads()} torch threads; {args.rounds} rounds"
    )
    print(f"largest |difference| between the variants' log-mels: {worst:.2e}")
    base = statistics.median(times[next(iter(times))])
    for key, ts in times.items():
        med = statistics.median(ts)
        print(f"{key:>12}: {args.batch / med:7.1f} clips/s  time {med / base:.2f}x of {next(iter(times))}")


if __name__ == "__main__":
    main()
