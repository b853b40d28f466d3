"""``audiocls serve`` (issue 27): the server started on 127.0.0.1 and a free port with a checkpoint from a short fit,
real HTTP requests: every format scored as ``audiocls predict`` scores it, concurrent requests batched, each bad
input refused with its status while the server keeps answering."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocls.cli import main
from tests.test_after_fit import fitted  # noqa: F401  (the checkpoint of a short fit on the tiny set)
from tests.test_predict import noise

httpx = pytest.importorskip("httpx")
pytest.importorskip("litserve")

ROOT = Path(__file__).resolve().parents[1]
SR = 8000
#: limits the server is started with, small so the over-limit files are small
MAX_MB, MAX_SECONDS = 1.0, 20.0
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"} | (
    {"mp3": "MP3"} if "MP3" in sf.available_formats() else {}
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``audiocls serve`` in a process of its own group, answering ``/health``; its log in ``log``."""
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "audiocls", "serve", f"--ckpt_path={ckpt}", f"--port={port}", "--device=cpu", *extra]
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"audiocls serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).text == "ok":
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"audiocls serve did not answer /health in 120 s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (LitServe's workers with it), SIGKILL if it lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(20)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group outlived its leader
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="module")
def server(fitted, tmp_path_factory):  # noqa: F811
    """``(url, checkpoint)`` of a server batching up to 8 requests, with small limits."""
    work = tmp_path_factory.mktemp("serve")
    proc, url = start_server(
        fitted["ckpt"], work / "serve.log", f"--max_mb={MAX_MB}", f"--max_seconds={MAX_SECONDS}",
        "--max_batch_size=8", "--batch_timeout=0.2",
    )  # fmt: skip
    yield url, fitted["ckpt"]
    stop_server(proc)


def encode(fmt: str, seconds: float = 1.0, seed: int = 0, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, noise(seconds, sr, seed=seed), sr, format=FORMATS.get(fmt, fmt.upper()))
    return buf.getvalue()


def post(url: str, data: bytes, params: dict | None = None, *, form: bool = False, path: str = "/predict"):
    if form:
        return httpx.post(f"{url}{path}", files={"file": ("clip.bin", data)}, data=params or {}, timeout=60)
    return httpx.post(f"{url}{path}", content=data, params=params or {}, timeout=60)


def still_up(url: str) -> None:
    assert httpx.get(f"{url}/health", timeout=10).text == "ok"
    r = post(url, encode("wav"))
    assert r.status_code == 200, r.text


def test_every_format_gets_the_labels_audiocls_predict_gives(server, tmp_path):
    url, ckpt = server
    files = []
    for i, fmt in enumerate(FORMATS):
        seconds = 3.0 if fmt == "flac" else 1.0  # a long one: windows averaged as predict averages them
        files.append(tmp_path / f"clip.{fmt}")
        files[-1].write_bytes(encode(fmt, seconds, seed=i))
    out = tmp_path / "pred.json"
    assert main(["predict", f"--ckpt_path={ckpt}", "--files", *map(str, files), "--format=json", f"--out={out}"]) == 0
    expected = json.loads(out.read_text())
    for i, (f, want) in enumerate(zip(files, expected, strict=True)):
        r = post(url, f.read_bytes(), {"windows": "true"}, form=i % 2 == 1)  # raw body and form in turn
        assert r.status_code == 200, r.text
        got = r.json()
        assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]], f.name
        assert [t["probability"] for t in got["top"]] == pytest.approx(
            [t["probability"] for t in want["top"]], abs=1e-5
        )
        assert got["duration_s"] == want["duration_s"] and got["sample_rate"] == SR
        assert [(w["start_s"], w["end_s"]) for w in got["windows"]] == [
            (w["start_s"], w["end_s"]) for w in want["windows"]
        ]
        assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-4)  # every class's score, single-label
        assert got["warnings"] == []


def test_parameters_shape_the_answer(server):
    url, _ = server
    got = post(url, encode("wav", 3.0), {"top_k": "2", "hop_seconds": "1.0", "windows": "1"}).json()
    assert len(got["top"]) == 2
    assert [w["start_s"] for w in got["windows"]] == [0.0, 1.0, 2.0]
    assert "windows" not in post(url, encode("wav", 3.0)).json()  # only when asked


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server):
    """... and a bad file among them fails alone: it is refused before the queue, never inside a batch."""
    url, _ = server
    clips = [encode("wav", 1.0, seed=s) for s in range(16)]
    alone = [post(url, c).json() for c in clips[:4]]
    with ThreadPoolExecutor(17) as pool:
        answers = list(pool.map(lambda c: post(url, c), [*clips, b"not audio"]))  # one bad file among them
    assert [r.status_code for r in answers] == [200] * 16 + [400]
    got = [r.json() for r in answers[:16]]
    assert max(g["batch_requests"] for g in got) > 1  # some requests shared a forward pass
    for a, g in zip(alone, got[:4], strict=True):
        assert g["scores"] == pytest.approx(a["scores"], abs=1e-5)


def fitted_classes(ckpt: Path) -> list[str]:
    from audiocls.training.checkpoints import load_checkpoint

    return load_checkpoint(ckpt).class_names


def _truncated_flac() -> bytes:
    data = encode("flac", 1.0)
    return data[: len(data) // 3]


def _nan_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full(SR, np.nan, np.float32), SR, format="WAV", subtype="FLOAT")
    return buf.getvalue()


#: (name, body, query or form fields, multipart, status, words the message holds)
BAD = [
    ("empty body", b"", {}, False, 400, "empty"),
    ("not audio", b"hello, this is text", {}, False, 400, "cannot decode"),
    ("truncated flac", None, {}, False, 400, "cannot decode"),
    ("NaN samples", None, {}, False, 400, "NaN"),
    ("over the upload limit", b"\0" * int(MAX_MB * 1e6 + 10), {}, False, 413, "1000000 bytes"),
    ("over the duration limit", None, {}, False, 413, f"{MAX_SECONDS:g} s"),
    ("top_k not a number", None, {"top_k": "many"}, False, 422, "top_k"),
    ("top_k zero", None, {"top_k": "0"}, True, 422, "at least 1"),
    ("negative hop", None, {"hop_seconds": "-1"}, False, 422, "hop_seconds"),
    ("NaN hop", None, {"hop_seconds": "nan"}, False, 422, "hop_seconds"),
    ("threshold on a single-label model", None, {"threshold": "0.3"}, False, 422, "single-label"),
    ("unknown parameter", None, {"topk": "3"}, False, 422, "valid: top_k"),
    ("windows not a yes/no", None, {"windows": "maybe"}, False, 422, "windows"),
]
BODIES = {
    "truncated flac": _truncated_flac,
    "NaN samples": _nan_wav,
    "over the duration limit": lambda: encode("wav", MAX_SECONDS + 5),
}


@pytest.mark.parametrize("name, body, params, form, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_with_its_status_and_the_server_stays_up(server, name, body, params, form, status, words):
    url, _ = server
    body = BODIES[name]() if name in BODIES else encode("wav") if body is None else body
    r = post(url, body, params, form=form)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    still_up(url)


def test_a_form_without_a_file_and_a_bad_explain_target_are_refused(server):
    url, _ = server
    r = httpx.post(f"{url}/predict", files={"other": (None, "x")}, timeout=30)
    assert r.status_code == 400 and "'file' field" in r.json()["detail"]
    r = post(url, encode("wav"), {"target": "violin"}, path="/explain")
    assert r.status_code == 422 and "valid: " in r.json()["detail"]
    still_up(url)


def test_odd_audio_is_scored_with_a_warning_or_resampled_not_a_crash(server):
    url, _ = server
    buf = io.BytesIO()
    sf.write(buf, np.zeros(SR, np.float32), SR, format="WAV")
    silent = post(url, buf.getvalue()).json()
    assert "silent" in silent["warnings"][0]
    # a rate with no small common factor with the model's: torchaudio's kernel alone would take gigabytes
    odd = post(url, encode("wav", 1.0, sr=96001))
    assert odd.status_code == 200 and odd.json()["duration_s"] == pytest.approx(1.0, abs=1e-3)
    still_up(url)


def test_info_page_and_explain(server):
    url, ckpt = server
    info = httpx.get(f"{url}/info", timeout=10).json()["model"]
    assert info["classes"] == fitted_classes(ckpt)
    assert (info["sample_rate"], info["clip_seconds"], info["task"]) == (SR, 1.0, "multiclass")
    assert info["limits"] == {"max_bytes": int(MAX_MB * 1e6), "max_seconds": MAX_SECONDS}
    page = httpx.get(url, timeout=10)
    assert page.headers["content-type"].startswith("text/html") and "<script>" in page.text
    assert "://" not in page.text  # nothing fetched from elsewhere: the page works offline
    png = post(url, encode("wav"), {"top_k": "2"}, form=True, path="/explain")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_serve_listens_on_loopback_unless_told_and_checks_its_settings(fitted, capsys):  # noqa: F811
    from audiocls.commands.serve import build_parser

    assert build_parser().parse_args(["--ckpt_path=x"]).host == "127.0.0.1"
    for setting in ("--max_batch_size=0", "--max_mb=0", "--batch_timeout=-1"):
        assert main(["serve", f"--ckpt_path={fitted['ckpt']}", setting]) == 2
        assert setting.split("=")[0] in capsys.readouterr().err


@pytest.mark.slow  # a second server: ~15 s more
def test_a_multilabel_model_answers_the_labels_over_its_thresholds_and_every_score(tmp_path):
    import torch

    from audiocls.models.classifier import AudioClassifier
    from tests.conftest import TINY_FRONTEND

    names = ["dog", "rain", "bird"]
    torch.manual_seed(0)
    model = AudioClassifier("test_resnet", num_classes=3, in_chans=3, class_names=names, task="multilabel")
    state = model.state_dict()
    state["thresholds"], state["thresholds_tuned"] = torch.tensor([0.0, 1.01, 0.0]), torch.tensor(True)
    dm = {"_class_path": "audiocls.data.synthetic.SyntheticDataModule", "sample_rate": SR, "clip_seconds": 1.0}
    ckpt = tmp_path / "ml.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(model.hparams),
                "datamodule_hyper_parameters": dm | {"frontend": dict(TINY_FRONTEND)}}, ckpt)  # fmt: skip
    proc, url = start_server(ckpt, tmp_path / "serve.log", "--max_batch_size=4")
    try:
        assert httpx.get(f"{url}/info", timeout=10).json()["model"]["threshold"] == [0.0, 1.01, 0.0]
        got = post(url, encode("wav")).json()
        assert sorted(t["label"] for t in got["top"]) == ["bird", "dog"]  # the tuned thresholds: rain never
        assert sorted(got["scores"]) == sorted(names)  # every score, sigmoids (need not sum to 1)
        assert len(post(url, encode("wav"), {"threshold": "0"}).json()["top"]) == 3  # the request's threshold wins
        assert post(url, encode("wav"), {"threshold": "1.5"}).status_code == 422
    finally:
        stop_server(proc)
