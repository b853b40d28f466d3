"""The frontend's speed setting side by side: clips/s of LogMelFrontend per ``chunk_frames`` value.

Every variant runs on the same 32 clips (real ESC-10 clips when $AUDIOCLS_ESC50_ROOT names an ESC-50 folder, 5 s at
44.1 kHz, the paper's three channels, no augmentation), in alternating rounds so that other load on the
machine hits all alike; figures are medians, and each variant's time is also printed as a ratio to the first.
The outputs agree to float32 rounding (checked before timing).

    .venv/bin/python benchmarks/frontend_variants.py                        # 256 (the default) vs the rest
    .venv/bin/python benchmarks/frontend_variants.py --chunks 256 128 --rounds 31
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

DEFAULT = [256, 128, 512, 64]


def chunk(text: str) -> int:
    """``chunk_frames`` as a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give chunk_frames as positive integers, e.g. 256 128")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", nargs="+", type=chunk, default=DEFAULT, help="chunk_frames values, first = base")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    data, source = clips(args.batch)
    wave = torch.from_numpy(data)
    fronts = {f"chunk {c}": LogMelFrontend(FrontendConfig(), SR, chunk_frames=c) for c in args.chunks}
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
