"""Requests/s and p50/p95 latency of ``audiocls serve`` at 1, 8 and 32 concurrent clients, batching on and off,
beside ``audiocls predict``'s clips/s on the same files; the memory of the server's processes.

    .venv/bin/python benchmarks/serve_load.py                      # a random mobilenetv3_small_100, demo.yaml's data
    .venv/bin/python benchmarks/serve_load.py --ckpt_path runs/.../checkpoints/best.ckpt

Without ``--ckpt_path`` the script writes a checkpoint of ``--backbone`` with random weights (speed does not depend
on training) for ``--seconds`` clips at ``--sample_rate`` with the default frontend. Every request posts one clip
(a WAV of exactly one model clip) as the raw body; each client sends its next request when the last one returns.
Memory is the sum of the proportional set size (PSS: shared pages split between the processes sharing them) of
the server's process group: the HTTP process and LitServe's model workers (one for /predict, one for /explain).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def random_checkpoint(path: Path, backbone: str, sample_rate: int, seconds: float, num_classes: int = 10) -> Path:
    """A checkpoint in the layout ``audiocls fit`` writes, with random weights."""
    import torch

    from audiocls.models.classifier import AudioClassifier

    torch.manual_seed(0)
    names = [f"class_{i}" for i in range(num_classes)]
    model = AudioClassifier(backbone, num_classes=num_classes, in_chans=3, class_names=names)
    dm = {"_class_path": "audiocls.data.synthetic.SyntheticDataModule", "sample_rate": sample_rate}
    dm |= {"clip_seconds": seconds, "frontend": {}}
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "datamodule_hyper_parameters": dm},
        path,
    )
    return path


def server_pss_mb(pgid: int) -> float:
    """PSS in MB summed over the processes of group ``pgid``."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def start(ckpt: Path, port: int, max_batch_size: int, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "audiocls", "serve", f"--ckpt_path={ckpt}", f"--port={port}", "--device=cpu"]
    args += [f"--max_batch_size={max_batch_size}", "--batch_timeout=0.01"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).text == "ok":
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def load(url: str, clips: list[bytes], clients: int, requests: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p95 ms) of ``requests`` posts from ``clients`` clients."""

    def client(i: int) -> list[float]:
        out = []
        with httpx.Client(timeout=300) as c:
            for j in range(i, requests, clients):
                t0 = time.perf_counter()
                r = c.post(f"{url}/predict", content=clips[j % len(clips)])
                r.raise_for_status()
                out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = sorted(x for part in pool.map(client, range(clients)) for x in part)
    wall = time.perf_counter() - t0
    return len(lat) / wall, 1000 * statistics.median(lat), 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", type=Path, default=None)
    p.add_argument("--backbone", default="mobilenetv3_small_100")
    p.add_argument("--sample_rate", type=int, default=16000)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--clips", type=int, default=32, help="distinct files")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--port", type=int, default=8791)
    args = p.parse_args()
    from audiocls.cli import configure_process
    from audiocls.commands.predict import predict_files
    from audiocls.training.checkpoints import load_checkpoint

    configure_process()  # as audiocls predict runs: denormals flushed
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    ckpt = args.ckpt_path or random_checkpoint(work / "model.ckpt", args.backbone, args.sample_rate, args.seconds)
    loaded = load_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    files = []
    for i in range(args.clips):
        files.append(work / f"clip{i:03d}.wav")
        sf.write(files[-1], 0.1 * rng.standard_normal(loaded.clip_samples).astype(np.float32), loaded.sample_rate)
    clips = [f.read_bytes() for f in files]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"model: {loaded.model.hparams['backbone']}, clips of {loaded.clip_seconds:g} s at {loaded.sample_rate} Hz")
    predict_files(loaded, files[:2])  # warm-up
    t0 = time.perf_counter()
    predict_files(loaded, files)
    print(f"audiocls predict (in-process, batch of windows 16): {len(files) / (time.perf_counter() - t0):.1f} clips/s")
    del loaded
    memory = {}
    print("| batching | clients | requests/s | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- | --- |")
    for batching, size in (("on (16, 10 ms)", 16), ("off", 1)):
        proc = start(ckpt, args.port, size, work / f"serve_{size}.log")
        url = f"http://127.0.0.1:{args.port}"
        try:
            load(url, clips, 4, 8)  # warm-up
            for n in args.clients:
                rps, p50, p95 = load(url, clips, n, max(32, 4 * n))
                print(f"| {batching} | {n} | {rps:.1f} | {p50:.0f} | {p95:.0f} |", flush=True)
            memory[batching] = server_pss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            with contextlib.suppress(ProcessLookupError):  # whatever of the group outlived its leader
                os.killpg(proc.pid, signal.SIGKILL)
    for batching, mb in memory.items():
        print(f"server memory (PSS, all its processes, after the load), batching {batching}: {mb:.0f} MB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
