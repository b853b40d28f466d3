"""``audiocls serve --ckpt_path best.ckpt``: a trained model behind an HTTP API, on LitServe.

``POST /predict`` (an audio file: raw body or the ``file`` field of a form) answers what ``audiocls predict``
prints for that file, as JSON; ``POST /explain`` answers ``audiocls explain``'s saliency PNG; ``GET /`` is a page
to try the model in a browser; ``GET /health`` and ``GET /info`` are LitServe's. Concurrent requests are batched
(``--max_batch_size``, ``--batch_timeout``): the windows of every request in a batch share forward passes.
Nothing is re-implemented: the checkpoint is read by ``load_checkpoint``, audio scored by ``score_waves`` and
described by ``describe_scores``, as ``predict`` does. No authentication, no TLS: it listens on 127.0.0.1 unless
told otherwise (docs/USING_A_MODEL.md says how to put it behind a proxy).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError

__all__ = ["PredictAPI", "ExplainAPI", "build_server", "model_info", "main"]

log = logging.getLogger(__name__)

try:  # an extra: pip install -e '.[serve]'
    import litserve as ls
    from fastapi import Response
    from fastapi.responses import HTMLResponse
except ImportError:  # pragma: no cover - said by main
    ls = None

_Base = ls.LitAPI if ls is not None else object


class PredictAPI(_Base):
    """``POST /predict``: class probabilities of each request's wave, the windows of a batch of requests scored
    together (:func:`~audiocls.commands.scoring.score_waves`)."""

    def __init__(self, ckpt_path: str, threshold, *, batch_windows: int = 16, **kwargs) -> None:
        super().__init__(api_path="/predict", **kwargs)
        self.ckpt_path, self.threshold, self.batch_windows = ckpt_path, threshold, batch_windows

    def setup(self, device: str) -> None:
        self.loaded = _worker_model(self.ckpt_path, device)

    def decode_request(self, request: dict) -> dict:
        from audiocls.commands.serve_http import wave_of

        return request | {"wave": wave_of(request)}

    def batch(self, inputs: list[dict]) -> list[dict]:
        return inputs

    def predict(self, x):
        """``x``: one request (``--max_batch_size 1``) or a list of them; the same shape back."""
        from audiocls.commands.predict import describe_scores
        from audiocls.commands.scoring import score_waves

        items = x if isinstance(x, list) else [x]
        loaded = self.loaded
        scored = score_waves(
            loaded, [r["wave"] for r in items], hop_seconds=[r["params"].get("hop_seconds") for r in items],
            batch_size=self.batch_windows,
        )  # fmt: skip
        out = []
        for r, (probs, window_probs, starts) in zip(items, scored, strict=True):
            p = r["params"]
            result = describe_scores(
                loaded, len(r["wave"]), probs, window_probs, starts,
                top_k=p.get("top_k", 5), threshold=p.get("threshold", self.threshold),
            )  # fmt: skip
            if not p.get("windows", False):
                del result["windows"]
            out.append(
                {"file": r["name"], **result, "sample_rate": loaded.sample_rate}
                | {"scores": {n: round(float(v), 6) for n, v in zip(loaded.class_names, probs, strict=True)}}
                | {"warnings": [r["warning"]] if r["warning"] else [], "batch_requests": len(items)}
            )
        return out if isinstance(x, list) else out[0]

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


class ExplainAPI(_Base):
    """``POST /explain``: ``audiocls explain``'s saliency PNG of one request (never batched)."""

    def __init__(self, ckpt_path: str, **kwargs) -> None:
        super().__init__(api_path="/explain", max_batch_size=1, **kwargs)
        self.ckpt_path = ckpt_path

    def setup(self, device: str) -> None:
        self.loaded = _worker_model(self.ckpt_path, device)

    def decode_request(self, request: dict) -> dict:
        from audiocls.commands.serve_http import wave_of

        return request | {"wave": wave_of(request)}

    def predict(self, x: dict) -> bytes:
        from audiocls.commands.explain import explain_wave, resolve_targets, saliency_png

        loaded, p = self.loaded, x["params"]
        targets = resolve_targets([p["target"]] if "target" in p else None, loaded.class_names)
        sal, start, length = explain_wave(
            loaded, x["wave"], targets, top_k=p.get("top_k", 1), start_seconds=p.get("start_seconds")
        )
        sr = loaded.sample_rate
        return saliency_png(sal, loaded, title=f"{x['name']} [{start / sr:.2f}-{(start + length) / sr:.2f} s]")

    def encode_response(self, output: bytes) -> Response:
        return Response(content=output, media_type="image/png")


def _worker_model(ckpt_path: str, device: str):
    """The checkpoint's model in a LitServe worker, a process spawned afresh: ``audiocls.cli.configure_process``'s
    denormal flush does not reach it, and without it a random-init mobilenetv3_small scored 4x slower on our CPU."""
    import torch

    from audiocls.training.checkpoints import load_checkpoint

    torch.set_flush_denormal(True)
    return load_checkpoint(ckpt_path).to(device)


def model_info(loaded, threshold) -> dict:
    """``GET /info``'s ``model``: what a client needs to know to send audio and read the answer."""
    task = loaded.model.task_type
    return {
        "checkpoint": loaded.path.name,
        "backbone": loaded.model.hparams.get("backbone"),
        "task": task.name,
        "task_description": task.description,
        "classes": list(loaded.class_names),
        "sample_rate": loaded.sample_rate,
        "clip_seconds": loaded.clip_seconds,
        "threshold": None if threshold is None else np.asarray(threshold, dtype=float).round(6).tolist(),
    }


def page_html() -> str:
    """The page at ``GET /``: plain HTML and JavaScript, no build step, nothing fetched from elsewhere."""
    return resources.files("audiocls.commands").joinpath("serve_page.html").read_text(encoding="utf-8")


def build_server(
    ckpt_path: str | Path,
    *,
    device: str = "auto",
    max_batch_size: int = 16,
    batch_timeout: float = 0.01,
    workers: int = 1,
    max_mb: float = 50.0,
    max_seconds: float = 600.0,
    timeout: float = 120.0,
    threshold: float | None = None,
):
    """The LitServer of ``audiocls serve`` (not yet running), its checks done: a bad checkpoint fails here."""
    from audiocls.commands.predict import choose_thresholds
    from audiocls.commands.serve_http import AudioUploads, UploadGate
    from audiocls.training.checkpoints import load_checkpoint

    loaded = load_checkpoint(ckpt_path)  # here: checked now, and its facts for /info and the upload checks
    thresholds = choose_thresholds(loaded, threshold) if loaded.model.task_type.thresholded else None
    gate = UploadGate(loaded, max_bytes=int(max_mb * 1e6), max_seconds=max_seconds)
    info = model_info(loaded, thresholds) | {"limits": {"max_bytes": gate.max_bytes, "max_seconds": max_seconds}}
    predict = PredictAPI(str(ckpt_path), thresholds, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    server = ls.LitServer(
        [predict, ExplainAPI(str(ckpt_path))], accelerator=device, devices=1, workers_per_device=workers,
        timeout=timeout, model_metadata=info, middlewares=[(AudioUploads, {"gate": gate})],
    )  # fmt: skip
    # LitServe answers GET / with "litserve running"; the page replaces that route (FastAPI's public router)
    server.app.router.routes[:] = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    page = page_html()

    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    server.app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    return server


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "serve", "A checkpoint behind an HTTP API (POST /predict, POST /explain, GET /, /info, /health)."
    )
    p.add_argument("--ckpt_path", required=True, help="the .ckpt written by 'audiocls fit'")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where the model runs")
    p.add_argument("--max_batch_size", type=int, default=16, help="requests batched together at most (1: no batching)")
    p.add_argument("--batch_timeout", type=float, default=0.01, help="seconds a batch waits to fill (default 0.01)")
    p.add_argument("--workers", type=int, default=1, help="model processes per device (default 1)")
    p.add_argument("--max_mb", type=float, default=50.0, help="largest upload in MB (default 50; larger: 413)")
    p.add_argument("--max_seconds", type=float, default=600.0, help="longest audio in seconds (default 600; 413)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may wait for its answer (504)")
    p.add_argument("--threshold", type=float, default=None, help="multi-label models: threshold (default: tuned)")
    return p


def main(argv: list[str]) -> int:
    """``audiocls serve``: runs until interrupted."""
    args = build_parser().parse_args(argv)
    if ls is None:
        raise ConfigError("audiocls serve needs LitServe: pip install -e '.[serve]'")
    for name, low in (("max_batch_size", 1), ("workers", 1), ("port", 1)):
        if getattr(args, name) < low:
            raise ConfigError(f"--{name}={getattr(args, name)} must be at least {low}")
    for name in ("max_mb", "max_seconds", "timeout"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name}={getattr(args, name)} must be positive")
    if args.batch_timeout < 0:
        raise ConfigError(f"--batch_timeout={args.batch_timeout} must be 0 or more seconds")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold={args.threshold} must lie in [0, 1]")
    server = build_server(
        args.ckpt_path, device=args.device, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout,
        workers=args.workers, max_mb=args.max_mb, max_seconds=args.max_seconds, timeout=args.timeout,
        threshold=args.threshold,
    )  # fmt: skip
    if not _loopback(args.host):
        log.warning(
            "listening on %s: anyone who reaches this address can use the model; there is no authentication and no "
            "TLS (put a proxy in front, see docs/USING_A_MODEL.md)", args.host,
        )  # fmt: skip
    log.info("serving %s on http://%s:%d/ (POST /predict, POST /explain)", args.ckpt_path, args.host, args.port)
    server.run(host=args.host, port=args.port, generate_client_file=False, num_api_servers=1, log_level="warning")
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
