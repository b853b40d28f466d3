"""torch's CPU FFT vs SciPy's pocketfft for the frontend's transforms: speed, accuracy, and what parity would say.

    .venv/bin/python benchmarks/fft_backends.py            # needs scipy (pip install scipy) and the repo's tests/

1. Speed: ``torch.fft.rfft`` and ``scipy.fft.rfft(workers=torch threads)`` on (256, 4410) float32 (one frontend
   chunk), alternating, medians; the ratio torch/scipy.
2. Accuracy of each against a float64 FFT of the same input (max |error|).
3. The frontend's output on the synthetic tones of ``tests/test_features.py`` with each FFT (SciPy's patched in
   for ``torch.fft.rfft`` during the call), against the paper's per-clip code (the parity test, tolerance 2e-3)
   and against the same frontend in float64.

audiocls keeps torch's FFT: SciPy's changes the float32 rounding of near-silent bins beyond the parity tolerance.
This script is the evidence (docs/BENCHMARKS.md, "What bounds the speed now").
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiocls.audio.frontend import FrontendConfig, LogMelFrontend  # noqa: E402
from tests.test_features import PARITY_ATOL, _tone, paper_reference  # noqa: E402

try:
    import scipy.fft as scipy_fft
except ImportError:
    sys.exit("benchmarks/fft_backends.py needs SciPy: .venv/bin/pip install scipy")

SR = 44100


def scipy_rfft(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``torch.fft.rfft(x)`` over the last dimension, by pocketfft (no other arguments are used here)."""
    if args or kwargs:
        raise TypeError("scipy_rfft takes the input only")
    return torch.from_numpy(scipy_fft.rfft(x.detach().numpy(), axis=-1, workers=torch.get_num_threads()))


def timed(fn, repeats: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    torch.set_flush_denormal(True)
    x = torch.randn(256, 4410, generator=torch.Generator().manual_seed(0))
    rounds = {"torch": [], "scipy": []}
    for _ in range(5):
        rounds["torch"].append(timed(lambda: torch.fft.rfft(x)))
        rounds["scipy"].append(timed(lambda: scipy_rfft(x)))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    print(f"threads {torch.get_num_threads()}; rfft (256, 4410) float32, medians of 5 rounds of 20")
    print(
        f"speed: torch {med['torch'] * 1e3:.2f} ms, scipy {med['scipy'] * 1e3:.2f} ms, torch/scipy {med['torch'] / med['scipy']:.2f}x"
    )
    ref = torch.fft.rfft(x.double())
    err = {k: float((f(x) - ref).abs().max()) for k, f in (("torch", torch.fft.rfft), ("scipy", scipy_rfft))}
    print(
        f"accuracy vs float64: torch {err['torch']:.2e}, scipy {err['scipy']:.2e} (max |error|, peak |X| {float(ref.abs().max()):.0f})"
    )

    gen = torch.Generator().manual_seed(0)
    clips = torch.stack(  # the clips of tests/test_features.py's parity test
        [
            _tone(440, SR, 5.0) + 0.5 * _tone(3000, SR, 5.0),
            _tone(100, SR, 5.0) * torch.linspace(0, 1, 5 * SR),
            torch.randn(5 * SR, generator=gen) * 0.01,
        ]
    )
    fe = LogMelFrontend(FrontendConfig(), SR)
    with torch.no_grad():
        ours = {"torch": fe(clips).numpy()}
        original = torch.fft.rfft
        torch.fft.rfft = scipy_rfft
        try:
            ours["scipy"] = fe(clips).numpy()
        finally:
            torch.fft.rfft = original
    with torch.enable_grad():  # the plain path in float64 (autograd: no chunked float32 buffers)
        truth = LogMelFrontend(FrontendConfig(), SR).double()(clips.double().requires_grad_()).detach().numpy()
    for i, clip in enumerate(clips.numpy()):
        ref = paper_reference(clip, SR)
        parts = [f"per-clip code vs float64 {np.abs(ref - truth[i]).max():.4f}"]
        for k, out in ours.items():
            parts.append(
                f"{k}: vs per-clip {np.abs(out[i] - ref).max():.4f}, vs float64 {np.abs(out[i] - truth[i]).max():.4f}"
            )
        print(f"tone clip {i} (ln-mel max |diff|; parity tolerance {PARITY_ATOL}): " + "; ".join(parts))


if __name__ == "__main__":
    main()
