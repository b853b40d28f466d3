"""``audiocls data download|verify`` against a local HTTP server on 127.0.0.1, never the internet."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocls.cli import main as cli_main
from audiocls.commands.data import main
from audiocls.data.download import fetch, safe_extract
from audiocls.errors import DataError


class _Server:
    """Serves ``files`` (name -> bytes) with HTTP Range support; records the Range header of each request."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.ranges = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = outer.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _wav_bytes(seconds=0.2, sr=8000, freq=440.0) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _fsdd_zip(corrupt: str | None = None) -> bytes:
    """An FSDD-like archive: free-spoken-digit-dataset-master/recordings/<d>_<speaker>_<take>.wav."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for d in range(10):
            for take in range(6):
                name = f"{d}_anna_{take}.wav"
                data = b"junk" * 10 if name == corrupt else _wav_bytes(freq=200 + 40 * d)
                zf.writestr(f"free-spoken-digit-dataset-master/recordings/{name}", data)
        zf.writestr("free-spoken-digit-dataset-master/README.md", "fsdd")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_download_unpack_and_check_layout(tmp_path, capsys):
    archive = _fsdd_zip()
    with _Server({"fsdd.zip": archive}) as srv:
        args = ["data", "download", "fsdd", "--root", str(tmp_path / "data"), "--url", srv.url("fsdd.zip")]
        assert cli_main([*args, "--checksum", _sha(archive), "--no_progress"]) == 0
    out = capsys.readouterr().out
    data_root = tmp_path / "data" / "free-spoken-digit-dataset-master"
    assert "fsdd: 60 clips" in out and f"--data.root {data_root}" in out
    assert len(list((data_root / "recordings").glob("*.wav"))) == 60
    assert not (tmp_path / "data" / "fsdd.zip").exists()  # archive removed after a good unpack


def test_download_resumes_a_partial_file(tmp_path):
    archive = _fsdd_zip()
    dest = tmp_path / "fsdd.zip"
    (tmp_path / "fsdd.zip.part").write_bytes(archive[: len(archive) // 3])
    with _Server({"fsdd.zip": archive}) as srv:
        fetch(srv.url("fsdd.zip"), dest, _sha(archive), progress=False)
        assert srv.ranges == [f"bytes={len(archive) // 3}-"]
        assert dest.read_bytes() == archive and not (tmp_path / "fsdd.zip.part").exists()
        fetch(srv.url("fsdd.zip"), dest, _sha(archive), progress=False)  # complete and matching: no request
        assert len(srv.ranges) == 1


def test_download_checksum_mismatch_removes_the_file(tmp_path):
    with _Server({"x.zip": b"something else"}) as srv:
        with pytest.raises(DataError, match="does not match its checksum"):
            fetch(srv.url("x.zip"), tmp_path / "x.zip", "md5:" + "0" * 32, progress=False)
        with pytest.raises(DataError, match="failed"):
            fetch(srv.url("missing.zip"), tmp_path / "m.zip", None, progress=False)
    assert not list(tmp_path.iterdir())


def _tar(tmp_path: Path, members: list[tarfile.TarInfo], name="evil.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            data = b"x" * m.size if m.isfile() else None
            tf.addfile(m, io.BytesIO(data) if data else None)
    return path


def _info(name, kind=tarfile.REGTYPE, linkname="", size=1):
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, linkname, size if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_info("../escaped.txt"), r"'\.\.'"),
        (_info("/tmp/absolute.txt"), "absolute"),
        (_info("ok/link", tarfile.SYMTYPE, "../../outside"), "link"),
        (_info("ok/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_info("ok/hard", tarfile.LNKTYPE, "../outside"), r"'\.\.'|link"),
        (_info("ok/dev", tarfile.CHRTYPE), "special"),
    ],
)
def test_unsafe_tar_is_refused_before_writing(tmp_path, member, match):
    archive = _tar(tmp_path, [_info("ok/first.txt"), member])
    target = tmp_path / "out"
    with pytest.raises(DataError, match=match):
        safe_extract(archive, target)
    assert not (target / "ok").exists() and not (tmp_path / "escaped.txt").exists()


def test_unsafe_zip_is_refused_and_safe_tar_unpacks(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fine.txt", "a")
        zf.writestr("../../evil.txt", "b")
    (tmp_path / "evil.zip").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"'\.\.'"):
        safe_extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()
    good = _tar(tmp_path, [_info("d/a.txt"), _info("d/inner", tarfile.SYMTYPE, "a.txt")], "good.tar.gz")
    safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "inner").read_bytes() == b"x"
    (tmp_path / "not.tar").write_bytes(b"plain text")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "not.tar", tmp_path / "out")


def test_verify_reports_undecodable_files(tmp_path, capsys):
    with zipfile.ZipFile(io.BytesIO(_fsdd_zip(corrupt="3_anna_2.wav"))) as zf:
        zf.extractall(tmp_path)
    root = tmp_path / "free-spoken-digit-dataset-master"
    assert main(["verify", "fsdd", "--root", str(tmp_path)]) == 1  # finds the layout one level down
    out = capsys.readouterr().out
    assert "3_anna_2.wav" in out and "1 problem" in out
    (root / "recordings" / "3_anna_2.wav").write_bytes(_wav_bytes())
    assert main(["verify", "fsdd", "--root", str(root)]) == 0
    assert "every file decodes" in capsys.readouterr().out


def test_dataset_constants_name_real_sources():
    from audiocls.data import esc50, fsdd, gtzan, urbansound8k

    for module in (esc50, urbansound8k, gtzan, fsdd):
        assert module.URL.startswith("https://")
        assert module.CHECKSUM is None or module.CHECKSUM.split(":")[0] in ("md5", "sha256")
    assert (esc50.NUM_FOLDS, urbansound8k.NUM_FOLDS, gtzan.NUM_FOLDS) == (5, 10, 10)
    assert len(urbansound8k.CLASSES) == len(gtzan.GENRES) == len(fsdd.CLASSES) == 10


def test_a_dataset_module_with_a_url_is_downloadable_by_declaring_itself():
    import importlib
    import pkgutil

    import audiocls.data
    from audiocls.commands.data import build_parser
    from audiocls.data.download import downloadable

    found = downloadable()
    assert sorted(found) == ["esc50", "fsdd", "gtzan", "urbansound8k"]
    for name, (module, cls) in found.items():
        assert cls.__module__ == module.__name__ and module.URL.startswith("https://"), name
    with_url = {
        info.name
        for info in pkgutil.iter_modules(audiocls.data.__path__)
        if hasattr(importlib.import_module(f"audiocls.data.{info.name}"), "URL")
    }
    assert with_url == {m.__name__.rsplit(".", 1)[-1] for m, _ in found.values()}
    assert build_parser().parse_args(["download", "gtzan", "--root", "x"]).name == "gtzan"
