"""Issue 28, the command side: file names that are not UTF-8 in predict/explain/embed, a strict UTF-8 stdout, and a
checkpoint of one task loaded for the other."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocls.cli import main
from audiocls.errors import ConfigError
from audiocls.models.classifier import AudioClassifier
from audiocls.training.checkpoints import check_checkpoint
from tests.test_predict import CLASSES, make_checkpoint, noise

#: a name Linux accepts that is not UTF-8 (Latin-1 "café.wav"), as Python gives it: with a lone surrogate
ODD = os.fsdecode(b"caf\xe9.wav")
#: how it is shown to people
ODD_SHOWN = "caf\\xe9.wav"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="file names are bytes on POSIX only")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.fixture()
def audio_dir(tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    try:
        for seed, name in enumerate(["a.wav", "b.wav", "tmp.wav"]):
            sf.write(folder / name, noise(0.5, 8000, seed=seed), 8000)
        (folder / "tmp.wav").rename(folder / ODD)  # soundfile cannot write to that name itself
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    return folder


def test_predict_scores_a_file_whose_name_is_not_utf8(ckpt, audio_dir, tmp_path):
    out = tmp_path / "pred.json"
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(audio_dir), "--format=json", f"--out={out}"])
    results = json.loads(out.read_text())
    assert [r.get("error") for r in results] == [None, None, None]
    assert sorted(Path(r["file"]).name for r in results) == sorted(["a.wav", "b.wav", ODD])
    assert code == 0


def test_embed_keeps_the_name_as_the_file_system_gives_it(ckpt, audio_dir, tmp_path):
    out = tmp_path / "emb.npy"
    code = main(["embed", f"--ckpt_path={ckpt}", "--files", str(audio_dir), f"--out={out}"])
    assert code == 0
    assert np.load(out).shape[0] == 3
    names = (tmp_path / "emb.files.txt").read_bytes().splitlines()
    assert sorted(os.path.basename(n) for n in names) == sorted([b"a.wav", b"b.wav", b"caf\xe9.wav"])

    out_csv = tmp_path / "emb.csv"
    assert main(["embed", f"--ckpt_path={ckpt}", "--files", str(audio_dir), f"--out={out_csv}"]) == 0
    rows = list(csv.reader(io.StringIO(out_csv.read_bytes().decode("utf-8", "surrogateescape"))))
    assert sorted(Path(r[0]).name for r in rows[1:]) == sorted(["a.wav", "b.wav", ODD])


def test_explain_a_file_whose_name_is_not_utf8(ckpt, audio_dir, tmp_path, capsys):
    out = tmp_path / "sal.png"
    code = main(["explain", str(audio_dir / ODD), f"--ckpt_path={ckpt}", f"--out={out}"])
    assert code == 0
    assert out.stat().st_size > 0
    assert ODD_SHOWN in capsys.readouterr().out


def _predict_subprocess(ckpt: Path, audio_dir: Path, fmt: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONPATH=str(Path(__file__).parents[1]))
    args = ["predict", f"--ckpt_path={ckpt}", "--files", str(audio_dir), f"--format={fmt}"]
    return subprocess.run([sys.executable, "-m", "audiocls", *args], env=env, capture_output=True, timeout=300)


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_predict_on_a_strict_utf8_stdout_prints_every_result(ckpt, audio_dir, fmt):
    """A desktop terminal: stdout strictly UTF-8; the other files' results are not lost, and the run succeeds."""
    done = _predict_subprocess(ckpt, audio_dir, fmt)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    out = done.stdout
    if fmt == "table":
        text = out.decode("utf-8")  # valid UTF-8: the odd name is shown escaped
        heads = sorted(Path(line.split(" (")[0]).name for line in text.splitlines() if not line.startswith(" "))
        assert heads == sorted(["a.wav", "b.wav", ODD_SHOWN])
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out.decode("utf-8", "surrogateescape"))))
        assert sorted({Path(r[0]).name for r in rows[1:]}) == sorted(["a.wav", "b.wav", ODD])
        assert all(r[7] == "" for r in rows[1:])
    else:
        results = json.loads(out.decode("utf-8"))
        assert sorted(Path(r["file"]).name for r in results) == sorted(["a.wav", "b.wav", ODD])
        assert all("error" not in r for r in results)


def test_checkpoint_of_the_other_task_is_named(tmp_path):
    """A single-label checkpoint given to a multi-label run with the same classes: one line naming the tasks."""
    ckpt = make_checkpoint(tmp_path / "single.ckpt")
    model = AudioClassifier("test_resnet", num_classes=len(CLASSES), in_chans=3, class_names=CLASSES, task="multilabel")
    with pytest.raises(ConfigError) as err:
        check_checkpoint(ckpt, model)
    message = str(err.value)
    assert "single-label (multiclass)" in message
    assert "multi-label (multilabel)" in message
    assert "missing keys" not in message
    assert "\n" not in message


def test_a_long_predict_run_reports_progress_on_stderr(ckpt, tmp_path, capsys, monkeypatch):
    """Progress lines on stderr, per file and within a long file; stdout holds the JSON alone."""
    from audiocls.commands import predict

    monkeypatch.setattr(
        predict, "PROGRESS_SECONDS", 0.0, raising=False
    )  # a line at every step, as each minute of a long run
    sf.write(tmp_path / "long.wav", noise(4.0, 8000), 8000)
    sf.write(tmp_path / "short.wav", noise(0.5, 8000), 8000)
    code = main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path), "--format=json", "--batch_size=2"])
    assert code == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2
    lines = [line for line in captured.err.splitlines() if line.startswith("predict: ")]
    assert any("long.wav" in line and "windows" in line for line in lines)  # 7 windows of the 4 s file, 2 a batch
    assert any(line.startswith("predict: 2 of 2 files") for line in lines)


def test_an_undecodable_file_whose_name_is_not_utf8_is_named_escaped(ckpt, tmp_path, caplog, capsys):
    (tmp_path / "x.wav").write_bytes(b"not audio")
    (tmp_path / "x.wav").rename(tmp_path / os.fsdecode(b"bad\xff.wav"))
    sf.write(tmp_path / "ok.wav", noise(0.5, 8000), 8000)
    assert main(["predict", f"--ckpt_path={ckpt}", "--files", str(tmp_path)]) == 1
    assert "bad\\xff.wav: FAILED" in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("audio file" in m and "bad\\xff.wav" in m for m in warnings)
    assert not any("\udcff" in m for m in warnings)  # shown as people read it, as in the table
