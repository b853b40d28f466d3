"""Faults and bad input: crash-safe files, safe loading and extraction, and one clear error before the first step.

Each test is a row of docs/RELIABILITY.md. The CLI cases run ``main([...])`` in-process and must fail with exit
code 2, one line naming the value and the fix, and no training step (no checkpoint folder).
"""

from __future__ import annotations

import errno
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest
import soundfile as sf
import timm
import torch

from audiocls.cli import main
from audiocls.errors import ConfigError, DataError
from audiocls.files import atomic_write_text
from audiocls.training.checkpoints import AtomicCheckpointIO
from audiocls.training.preflight import check_data_root
from tests.conftest import TINY_FRONTEND

PACKAGE = Path(__file__).resolve().parents[1] / "audiocls"


def _fails_before_training(args: list[str], capsys, *needles: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("audiocls: error:")]
    assert len(line) == 1, err[-2000:]
    for needle in needles:
        assert needle in line[0], (needle, line[0])
    assert not list(Path.cwd().glob("runs/**/*.ckpt")), "no training step may run"
    return line[0]


# --- crash-safe files ---------------------------------------------------------------------------------------
SAVER = """
import io, os, sys, time, torch
from audiocls.training.checkpoints import AtomicCheckpointIO
saver, big, done = AtomicCheckpointIO(), torch.arange(4_000_000, dtype=torch.float32), int(sys.argv[2])
for i in range(done):
    saver.save_checkpoint({"i": i, "x": big + i}, sys.argv[1])
real_save = torch.save


def half_then_stall(obj, f, *args, **kwargs):  # torch.save that writes half the bytes, says so, waits to be killed
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    f = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    print("mid-write", obj["i"], flush=True)
    time.sleep(600)


torch.save = half_then_stall
saver.save_checkpoint({"i": done, "x": big + done}, sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_saves_never_leaves_a_truncated_file(tmp_path):
    """A writer that saved 16 MB checkpoints 1 (then 3) times is SIGKILLed halfway through writing the next one (it
    says when it is there): the file loads whole every time, and is the last save completed."""
    target = tmp_path / "last.ckpt"
    for done in (1, 3):
        cmd = [sys.executable, "-c", SAVER, str(target), str(done)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()  # blocks until the writer is halfway through save number `done`
        assert line.split() == ["mid-write", str(done)], f"the writer ended early: rc {proc.wait()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ckpt = AtomicCheckpointIO().load_checkpoint(target)
        assert ckpt["i"] == done - 1
        assert torch.equal(ckpt["x"], torch.arange(4_000_000, dtype=torch.float32) + ckpt["i"])


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A disk that fills up mid-write: the error surfaces, the previous file is intact, no temporary file stays."""
    target = tmp_path / "last.ckpt"
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"i": 1}, target)

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io_.save_checkpoint({"i": 2}, target)
    monkeypatch.undo()
    assert io_.load_checkpoint(target)["i"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_result_files_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, '{"a": 1}')
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("killed before the rename")))
    with pytest.raises(OSError):
        atomic_write_text(path, '{"a": 2}')
    assert json.loads(path.read_text()) == {"a": 1} and len(list(tmp_path.iterdir())) == 1


def test_truncated_checkpoint_is_refused_by_name(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, good)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        AtomicCheckpointIO().load_checkpoint(bad)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("pwned"),))


def test_checkpoints_load_with_weights_only(tmp_path):
    """A checkpoint holding a pickled object that would run code on load is refused; the code does not run."""
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload()}, evil)
    with pytest.raises(ConfigError, match="evil.ckpt"):
        AtomicCheckpointIO().load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()


def test_the_one_torch_load_of_the_package_is_weights_only():
    """audiocls.files.load_torch_file is the package's only torch.load, and it loads weights only."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 1, match.end()
            while depth and end < len(text):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            calls.append((path.name, text[match.start() : end]))
    assert calls, "the scan must find the package's torch.load calls"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe
    assert [name for name, _call in calls] == ["files.py"], calls


def test_unreadable_torch_files_never_get_the_unsafe_advice(tmp_path):
    """torch's own error suggests retrying with weights_only=False; the one line audiocls prints does not."""
    from audiocls.files import load_torch_file

    evil, junk = tmp_path / "evil.ckpt", tmp_path / "junk.ckpt"
    torch.save({"x": _Payload()}, evil)
    junk.write_bytes(b"junk")
    for path in (evil, junk, tmp_path / "missing.ckpt"):
        with pytest.raises(ConfigError) as exc:
            load_torch_file(path)
        text = str(exc.value)
        assert path.name in text and "weights_only" not in text and "\n" not in text, text
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "member",
    [
        {"name": "../escape.txt"},
        {"name": "/tmp/absolute-escape.txt"},
        {"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"name": "sub/link", "type": tarfile.SYMTYPE, "linkname": "../../outside"},
        {"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"},
    ],
    ids=["dotdot", "absolute", "symlink-absolute", "symlink-dotdot", "hardlink-dotdot"],
)
def test_unsafe_archive_is_refused_and_writes_nothing(tmp_path, member):
    from audiocls.data import download

    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(member["name"])
        info.type = member.get("type", tarfile.REGTYPE)
        info.linkname = member.get("linkname", "")
        tf.addfile(info, io.BytesIO(b"") if info.type == tarfile.REGTYPE else None)
    target = tmp_path / "target"
    with pytest.raises(DataError, match="refusing"):
        download.safe_extract(archive, target)
    assert not (target / "ok.txt").exists() and not (tmp_path / "escape.txt").exists()


# --- fail before the first step -------------------------------------------------------------------------------
def test_unwritable_output_folder(tiny_args, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where the run folder should go")
    _fails_before_training(
        ["fit", *tiny_args, f"--trainer.logger.init_args.save_dir={tmp_path / 'blocker' / 'runs'}"],
        capsys,
        "not writable",
        "blocker",
        "--trainer.logger.save_dir",
    )


def test_full_output_disk(tiny_args, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("audiocls.files.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    _fails_before_training(["fit", *tiny_args], capsys, "1.0 MB free", "+ 67.1 MB for logs", "runs")


def test_missing_data_root(tmp_path, capsys):
    _fails_before_training(
        ["fit", "--data=audiocls.data.esc50.ESC50DataModule", f"--data.root={tmp_path / 'nope'}"],
        capsys,
        str(tmp_path / "nope"),
        "audiocls data download",
    )


def test_data_root_check_for_any_datamodule(tmp_path):
    class Module:
        root = tmp_path / "absent"

    with pytest.raises(DataError, match="absent does not exist"):
        check_data_root(Module())
    (tmp_path / "file").write_text("x")
    Module.root = tmp_path / "file"
    with pytest.raises(DataError, match="is a file"):
        check_data_root(Module())


def test_weights_of_another_architecture_name_the_keys(tiny_args, tmp_path, capsys):
    other = timm.create_model("test_efficientnet", num_classes=4)
    path = tmp_path / "efficientnet.pth"
    torch.save(other.state_dict(), path)
    line = _fails_before_training(["fit", *tiny_args, f"--model.weights={path}"], capsys, str(path), "does not fit")
    assert re.search(r"(conv_stem|conv1|bn1|blocks|layer1)\.[\w.]*(weight|bias|running_mean)", line), line


def _fake_checkpoint(path: Path, *, num_classes: int, n_mels: int, sample_rate: int = 8000) -> Path:
    from audiocls.models.classifier import AudioClassifier

    model = AudioClassifier("test_resnet", num_classes=num_classes, in_chans=3)
    frontend = {**TINY_FRONTEND, "n_mels": n_mels}
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "datamodule_hyper_parameters": {"sample_rate": sample_rate, "clip_seconds": 1.0, "frontend": frontend},
        },
        path,
    )
    return path


def test_checkpoint_with_another_num_classes(tiny_args, tmp_path, capsys):
    ckpt = _fake_checkpoint(tmp_path / "three.ckpt", num_classes=3, n_mels=TINY_FRONTEND["n_mels"])
    _fails_before_training(
        ["test", *tiny_args, f"--ckpt_path={ckpt}"], capsys, "model.num_classes: checkpoint 3 vs config 4", "--config"
    )


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test"])
@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint"])
def test_bad_ckpt_path_through_the_cli_gives_one_line(tiny_args, tmp_path, capsys, subcommand, damage):
    """Issue 15 item 3: a damaged --ckpt_path is refused by name before Lightning reads it, as the user types it."""
    good = _fake_checkpoint(tmp_path / "good.ckpt", num_classes=4, n_mels=TINY_FRONTEND["n_mels"])
    bad = tmp_path / f"{damage}.ckpt"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        bad.write_text("model: resnet\nepochs: 3\n")
    line = _fails_before_training([subcommand, *tiny_args, "--ckpt_path", str(bad)], capsys, str(bad))
    assert "weights_only=False" not in line


def test_checkpoint_from_an_incompatible_frontend(tiny_args, tmp_path, capsys):
    ckpt = _fake_checkpoint(tmp_path / "mels.ckpt", num_classes=4, n_mels=64, sample_rate=16000)
    line = _fails_before_training(
        ["fit", *tiny_args, f"--ckpt_path={ckpt}"], capsys, "data.frontend", "data.sample_rate"
    )
    assert "16000" in line and "8000" in line


def test_sample_rate_below_twice_f_max(tiny_args, capsys):
    frontend = json.dumps({**TINY_FRONTEND, "f_max": 6000.0})
    args = [a for a in tiny_args if not a.startswith("--data.frontend")]
    _fails_before_training(["fit", *args, f"--data.frontend={frontend}"], capsys, "f_max=6000", "sample_rate")


def test_clip_shorter_than_the_longest_window(tiny_args, capsys):
    _fails_before_training(["fit", *tiny_args, "--data.clip_seconds=0.05"], capsys, "shorter than the longest window")


def test_batch_larger_than_the_training_set(tiny_args, capsys):
    _fails_before_training(["fit", *tiny_args, "--data.batch_size=512"], capsys, "data.batch_size=512", "lower")


def test_corrupt_audio_file_in_the_dataset(tiny_root, tmp_path, tiny_args, capsys):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    bad = sorted((root / "audio").glob("*.wav"))[7]
    bad.write_bytes(bad.read_bytes()[:20])
    args = [a if not a.startswith("--data.root=") else f"--data.root={root}" for a in tiny_args]
    _fails_before_training(["fit", *args, f"--data.cache_dir={tmp_path / 'cache'}"], capsys, str(bad))
    assert sf.info(sorted((root / "audio").glob("*.wav"))[0]).frames > 0  # the others were fine
