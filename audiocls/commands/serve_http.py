"""The HTTP side of ``audiocls serve``: an audio upload becomes a checked, decoded wave before LitServe sees it.

LitServe 0.2 reads a POST body as JSON or as a form (``litserve.server.BaseRequestHandler._prepare_request``) and
hands it to the inference worker; a batch of requests shares one ``decode_request``/``predict`` call there, so one
undecodable file would fail every request batched with it. :class:`AudioUploads`, an ASGI middleware given to
LitServer through its public ``middlewares=``, therefore does all the checking in the HTTP process, before the
queue: the size limit while the body arrives (413), the parameters (422), the decode and the duration limit (400,
413). What reaches LitServe is JSON holding the decoded wave, which cannot fail.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from dataclasses import dataclass
from urllib.parse import parse_qsl

import anyio
import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from audiocls.commands.scoring import suspicious_input
from audiocls.data.io import decode_audio
from audiocls.errors import AudioLoadError, AudioTooLongError
from audiocls.training.checkpoints import LoadedModel

__all__ = ["Rejected", "UploadGate", "AudioUploads", "parse_params", "wave_of"]

log = logging.getLogger(__name__)

#: bytes of an over-size body read and thrown away so the client can read the 413 (beyond this, the connection closes)
DRAIN = 64 << 20
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class Rejected(Exception):
    """A request refused with HTTP ``status``; ``detail`` names the problem and the fix."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class UploadGate:
    """What the HTTP process checks, and the model facts it needs (no weights).

    Attributes:
        loaded: the checkpoint's model (for its rate, clip length, classes and task; it never runs here).
        max_bytes: largest upload accepted.
        max_seconds: longest audio accepted.
    """

    loaded: LoadedModel
    max_bytes: int
    max_seconds: float

    @property
    def paths(self) -> tuple[str, ...]:
        return ("/predict", "/explain")


def _number(name: str, text: str, kind, *, low: float, high: float | None = None, low_open: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise Rejected(422, f"{name}={text!r} is not {'an integer' if kind is int else 'a number'}") from None
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        span = f"{'above' if low_open else 'at least'} {low:g}" + (f" and at most {high:g}" if high is not None else "")
        raise Rejected(422, f"{name}={text!r} must be {span}")
    return value


def parse_params(raw: dict[str, str], path: str, loaded: LoadedModel) -> dict:
    """The request's parameters, checked: :class:`Rejected` (422) for an unknown name or a wrong value.

    ``/predict``: ``top_k`` (>= 1), ``hop_seconds`` (> 0), ``threshold`` (in [0, 1], thresholded tasks only),
    ``windows`` (true/false). ``/explain``: ``target`` (a class name), ``top_k``, ``start_seconds`` (>= 0).
    """
    known = (
        ("top_k", "target", "start_seconds") if path == "/explain" else ("top_k", "hop_seconds", "threshold", "windows")
    )
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise Rejected(422, f"unknown parameter {unknown[0]!r} for {path}; valid: {', '.join(known)}")
    names, task = loaded.class_names, loaded.model.task_type
    out: dict = {}
    if "top_k" in raw:
        out["top_k"] = min(_number("top_k", raw["top_k"], int, low=1), len(names))
    if "hop_seconds" in raw:
        out["hop_seconds"] = _number("hop_seconds", raw["hop_seconds"], float, low=0, low_open=True)
    if "start_seconds" in raw:
        out["start_seconds"] = _number("start_seconds", raw["start_seconds"], float, low=0)
    if "threshold" in raw:
        if not task.thresholded:
            raise Rejected(
                422, f"threshold applies to models that pick labels over a threshold; this one is {task.description}: "
                "use top_k",
            )  # fmt: skip
        out["threshold"] = _number("threshold", raw["threshold"], float, low=0, high=1)
    if "windows" in raw:
        if raw["windows"].lower() not in _TRUE | _FALSE:
            raise Rejected(422, f"windows={raw['windows']!r} must be true or false")
        out["windows"] = raw["windows"].lower() in _TRUE
    if "target" in raw:
        if raw["target"] not in names:
            raise Rejected(422, f"target={raw['target']!r} is not a class of this model; valid: {', '.join(names)}")
        out["target"] = raw["target"]
    return out


def wave_of(payload: dict) -> np.ndarray:
    """The decoded wave ``(T,)`` float32 carried by :class:`AudioUploads`'s JSON."""
    return np.frombuffer(base64.b64decode(payload["wave"]), dtype=np.float32).copy()  # writable, for torch


class AudioUploads:
    """ASGI middleware: ``POST /predict`` and ``POST /explain`` with an audio file (raw body, or the ``file`` field of
    a multipart form; parameters in the query string or the form) become JSON ``{"wave", "name", "params",
    "warning"}`` for LitServe; every refusal is ``{"detail": ...}`` with its status."""

    def __init__(self, app, *, gate: UploadGate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.gate.paths:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(scope, receive)
            payload = await self._payload(scope, body)
        except Rejected as r:
            log.info("refused %s %s: %d %s", scope["method"], scope["path"], r.status, r.detail)
            await JSONResponse({"detail": r.detail}, status_code=r.status)(scope, receive, send)
            return
        data = json.dumps(payload).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        await self.app(dict(scope, headers=headers), replay, send)

    async def _body(self, scope, receive) -> bytes:
        """The whole body, refused (413) as soon as it passes the limit; what is left of it is read and dropped."""
        limit = self.gate.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        chunks, size, more = [], 0, True
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        while more and not too_big:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Rejected(400, "the client closed the connection before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            too_big = size > limit
            chunks.append(chunk)
        if too_big:
            dropped = size
            while more and dropped < DRAIN:
                message = await receive()
                dropped += len(message.get("body", b""))
                more = message.get("more_body", False) and message["type"] != "http.disconnect"
            raise Rejected(
                413, f"upload of {int(declared or size)} bytes is over the limit of {limit} bytes "
                f"({limit / 1e6:g} MB); send a shorter or compressed file, or raise the server's --max_mb",
            )  # fmt: skip
        return b"".join(chunks)

    async def _payload(self, scope, body: bytes) -> dict:
        raw = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        name = "upload"
        if content_type.startswith("multipart/form-data"):
            body, name, fields = await self._form(scope, body)
            raw |= fields
        params = parse_params(raw, scope["path"], self.gate.loaded)
        wave, warning = await anyio.to_thread.run_sync(self._decode, body, name)
        return {
            "wave": base64.b64encode(wave.tobytes()).decode("ascii"),
            "name": name,
            "params": params,
            "warning": warning,
        }

    async def _form(self, scope, body: bytes) -> tuple[bytes, str, dict[str, str]]:
        async def once():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form(max_files=1, max_fields=16)
        except Exception as err:  # starlette's MultiPartException, or a malformed body
            raise Rejected(400, f"cannot read the multipart form: {err}") from err
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
        if not files:
            raise Rejected(400, "the multipart form has no file; send the audio as the 'file' field (-F file=@a.wav)")
        upload = files[0][1]
        data = await upload.read()
        return data, upload.filename or "upload", fields

    def _decode(self, data: bytes, name: str) -> tuple[np.ndarray, str | None]:
        loaded = self.gate.loaded
        try:
            wave = decode_audio(data, loaded.sample_rate, name=name, max_seconds=self.gate.max_seconds)
        except AudioTooLongError as err:
            raise Rejected(413, str(err)) from err
        except AudioLoadError as err:
            raise Rejected(400, f"{err}; send WAV, FLAC, OGG or MP3 audio") from err
        except Exception as err:  # never a crash for anything a client sends
            log.exception("decoding %s failed", name)
            raise Rejected(400, f"cannot decode {name}: {type(err).__name__}: {err}") from err
        return wave, suspicious_input(loaded, name, wave, "scored anyway", data=data)
