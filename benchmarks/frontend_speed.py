"""Clips per second: the paper's per-clip CPU pipeline vs audiocls's batched frontend + augmentation.

(a) the official code's training transform (kamalesh0406/Audio-Classification, dataloaders/datasetaug.py),
    one clip at a time: librosa pitch_shift then time_stretch, three torchaudio MelSpectrograms (built per
    clip, as there), ln(mel + 1e-6), PIL bilinear resize to 128 x 250.
(b) audiocls: WaveAugment (pitch shift -2..+2 semitones, stretch x0.9..1.2, every clip) + LogMelFrontend,
    one batch at a time on ``--device``, in the default ``augment.pitch_time_mode`` (``spectral``: the frontend
    shifts each clip's power spectrum by a warped mel filterbank and stretches its frame axis in the final
    resize).
(b') the same draws in the other mode (``vocoder``: a phase vocoder and resampling of the waveform, as librosa).
Without augmentation, the frontends alone: the paper's per clip (three MelSpectrograms, log, PIL resize) and
audiocls's LogMelFrontend on the batch.

All run on the same 5 s 44.1 kHz clips (real ESC-10 clips when $AUDIOCLS_ESC50_ROOT names an ESC-50 folder), in
alternating rounds so that other load on the machine hits all alike; the figures are of medians. The last
three lines are ``ratio (b')/(a): N.Nx``, the frontend-only figures and ``ratio (b)/(a): N.Nx``.

    .venv/bin/python benchmarks/frontend_speed.py --rounds 3 --batch 32
    .venv/bin/python benchmarks/frontend_speed.py --profile          # torch.profiler tables of (b), (b'), then exit
    .venv/bin/python benchmarks/frontend_speed.py --device cuda --batch 256 --skip-paper
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

from audiocls.audio.augment import AugmentConfig, WaveAugment
from audiocls.audio.frontend import FrontendConfig, LogMelFrontend
from audiocls.data.io import load_audio, pad_or_crop

SR, SECONDS = 44100, 5.0
#: real clips from the ESC-50 release folder named by $AUDIOCLS_ESC50_ROOT (ESC-10's are among them), when set
ESC10 = Path(os.environ.get("AUDIOCLS_ESC50_ROOT") or "/nonexistent") / "audio"


def clips(n: int) -> tuple[np.ndarray, str]:
    """(n, 5 s) float32 clips: ESC-10 files when present, else tones in noise."""
    files = sorted(ESC10.glob("*.ogg"))[:n] if ESC10.is_dir() else []
    if len(files) == n:
        return np.stack([pad_or_crop(load_audio(f, SR), int(SR * SECONDS)) for f in files]), "ESC-10 clips"
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    waves = [np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.1 * rng.standard_normal(len(t)) for _ in range(n)]
    return np.stack(waves).astype(np.float32), "synthetic tones in noise"


def paper_clip(sample: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
    """The official per-clip training transform (datasetaug.py MelSpectrogram.__call__, mode 'train');
    ``rng=None``: the features alone, without the augmentation."""
    import torchvision
    from PIL import Image

    new_audio = sample
    if rng is not None:
        import librosa

        pitch_shift = int(rng.integers(-2, 3))  # the paper's -2..+2 (the official code's randint always gives 2)
        time_stretch = rng.random() * (1.2 - 0.9) + 0.9
        new_audio = librosa.effects.time_stretch(
            librosa.effects.pitch_shift(sample, sr=SR, n_steps=pitch_shift), rate=time_stretch
        )
    specs = []
    for win, hop in zip((25, 50, 100), (10, 25, 50), strict=True):
        clip = torch.Tensor(new_audio)
        spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SR,
            n_fft=4410,
            win_length=int(round(win * SR / 1000)),
            hop_length=int(round(hop * SR / 1000)),
            n_mels=128,
        )(clip)
        spec = np.log(spec.numpy() + 1e-6)
        specs.append(np.asarray(torchvision.transforms.Resize((128, 250))(Image.fromarray(spec))))
    return torch.Tensor(np.array(specs).reshape(-1, 128, 250))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-paper", action="store_true", help="time audiocls only (e.g. on a GPU machine)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of (b) and exit")
    args = parser.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"--device {args.device}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu"
        )
    torch.set_flush_denormal(True)
    data, source = clips(args.batch)
    settings = dict(pitch_shift=(-2.0, 2.0), time_stretch=(0.9, 1.2), pitch_time_p=1.0)
    augs = {m: WaveAugment(AugmentConfig(**settings, pitch_time_mode=m)) for m in ("spectral", "vocoder")}
    default = AugmentConfig().pitch_time_mode
    modes = {"b": default, "bs": next(m for m in augs if m != default)}  # (b): the default mode, (b'): the other
    frontend = LogMelFrontend(FrontendConfig(), SR).to(dev)
    batch = torch.from_numpy(data).to(dev)
    rng = np.random.default_rng(0)
    if args.profile:
        return profile(frontend, augs["vocoder"], augs["spectral"], batch)

    def timed(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        assert out.shape == (args.batch, 3, 128, 250)
        return time.perf_counter() - t0

    runs = {
        "b": lambda: timed(lambda: frontend(*augs[modes["b"]].with_pitch_time(batch))),
        "bs": lambda: timed(lambda: frontend(*augs[modes["bs"]].with_pitch_time(batch))),
        "b0": lambda: timed(lambda: frontend(batch)),
    }
    if not args.skip_paper:
        runs["a"] = lambda: timed(lambda: torch.stack([paper_clip(c, rng) for c in data]))
        runs["a0"] = lambda: timed(lambda: torch.stack([paper_clip(c, None) for c in data]))
        paper_clip(data[0], rng)  # warm-up: librosa's numba compilation
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        runs["b"]()  # warm-up: allocator, CUDA kernels
        runs["bs"]()  # and the warped filterbanks of the pitch values
        for _ in range(args.rounds):
            for key, run in runs.items():
                times[key].append(run())
    cps = {k: args.batch / statistics.median(v) for k, v in times.items()}
    print(
        f"machine: {platform.machine()} {torch.get_num_threads()} torch threads; device {dev}; torch {torch.__version__}"
    )
    print(f"data: {args.batch} x {SECONDS:g} s at {SR} Hz ({source}); {args.rounds} rounds, medians")
    print(
        f"(b) audiocls, {modes['b']} pitch/time (default)+frontend: {cps['b']:8.1f} clips/s  (rounds: {fmt(times['b'])} s)"
    )
    print(f"(b') audiocls, {modes['bs']} pitch/time+frontend: {cps['bs']:8.1f} clips/s  (rounds: {fmt(times['bs'])} s)")
    if args.skip_paper:
        print(f"frontend only: audiocls {cps['b0']:.1f} clips/s  (rounds: {fmt(times['b0'])} s)")
        return
    import librosa

    print(f"(a) paper per-clip, librosa {librosa.__version__}: {cps['a']:8.1f} clips/s  (rounds: {fmt(times['a'])} s)")
    print(f"ratio (b')/(a): {cps['bs'] / cps['a']:.1f}x  ({modes['bs']} pitch/time)")
    print(
        f"frontend only: audiocls {cps['b0']:.1f} clips/s, paper per-clip {cps['a0']:.1f} clips/s, "
        f"ratio {cps['b0'] / cps['a0']:.1f}x  (rounds: {fmt(times['b0'])} / {fmt(times['a0'])} s)"
    )
    print(f"ratio (b)/(a): {cps['b'] / cps['a']:.1f}x  ({modes['b']} pitch/time, the default)")


def profile(frontend: LogMelFrontend, aug: WaveAugment, spectral: WaveAugment, batch: torch.Tensor) -> None:
    """torch.profiler tables (self time per op) of the frontend, of the vocoder augmentation and of the spectral
    augmentation + frontend, one batch each."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if batch.is_cuda else [])
    sort = "self_cuda_time_total" if batch.is_cuda else "self_cpu_time_total"
    with torch.no_grad():
        for name, fn in (
            ("LogMelFrontend", lambda: frontend(batch)),
            ("WaveAugment (pitch_time, vocoder)", lambda: aug(batch)),
            ("spectral pitch/time + LogMelFrontend", lambda: frontend(*spectral.with_pitch_time(batch))),
        ):
            fn()
            with torch_profile(activities=activities) as prof:
                fn()
            print(f"--- {name}, batch {tuple(batch.shape)}")
            print(prof.key_averages().table(sort_by=sort, row_limit=12, max_name_column_width=36))


def fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
