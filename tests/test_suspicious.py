"""Suspicious audio (issue 15): truncated, silent and far-too-short files are warned about, named, and still used.

Real tiny files written in tmp: a 10 ms clip, an all-silent clip, a WAV cut short by chopping bytes off its end,
driven through ``main([...])`` as a user types the commands.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocls.cli import main
from audiocls.data.suspicious import SHOWN, WarningSummary, truncation
from tests.test_predict import make_checkpoint

SR = 8000


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chopped(path: Path, keep: float) -> Path:
    """A 1 s PCM-16 WAV with all but the first ``keep`` of its bytes cut off (header intact, data size unchanged)."""
    sf.write(path, tone(1.0), SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: round(len(data) * keep)])
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """normal (1 s), tiny (10 ms), silent (1 s of zeros), truncated (a 1 s WAV cut to 40 % of its bytes)."""
    out = {"normal": tmp_path / "normal.wav", "tiny": tmp_path / "tiny.wav", "silent": tmp_path / "silent.wav"}
    sf.write(out["normal"], tone(1.0), SR)
    sf.write(out["tiny"], tone(0.01), SR)
    sf.write(out["silent"], np.zeros(SR, np.float32), SR)
    out["truncated"] = chopped(tmp_path / "truncated.wav", 0.4)
    return out


def esc50_args(tiny_args: list[str], root: Path) -> list[str]:
    """conftest's tiny fit, on the ESC-50 tree at ``root`` instead of the synthetic set."""
    drop = ("--data=", "--data.root", "--data.num_classes", "--data.clips", "--data.seconds")
    args = [a for a in tiny_args if not a.startswith(drop)]
    return [*args, "--data=audiocls.data.esc50.ESC50DataModule", f"--data.root={root}", "--data.clip_seconds=1"]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_truncation_reads_libsndfile_s_header_check(tmp_path):
    cut = chopped(tmp_path / "cut.wav", 0.4)
    note = truncation(cut)
    assert note is not None and "header promises 16000 bytes of audio" in note and "(40%)" in note
    sf.write(tmp_path / "ok.wav", tone(1.0), SR, subtype="PCM_16")
    sf.write(tmp_path / "ok.flac", tone(1.0), SR)
    assert truncation(tmp_path / "ok.wav") is None and truncation(tmp_path / "ok.flac") is None
    # a WAV written to a pipe says 0xFFFFFFFF for "length unknown": not a truncation
    data = bytearray((tmp_path / "ok.wav").read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    assert sf.info(tmp_path / "streamed.wav").frames == SR and truncation(tmp_path / "streamed.wav") is None


def test_predict_warns_once_per_suspicious_file_and_scores_every_file(files, tmp_path, caplog):
    ckpt = make_checkpoint(tmp_path / "m.ckpt")  # trained on 1 s clips at 8 kHz
    out = tmp_path / "p.json"
    paths = [str(files[k]) for k in ("normal", "tiny", "silent", "truncated")]
    with caplog.at_level(logging.WARNING):
        assert main(["predict", f"--ckpt_path={ckpt}", "--files", *paths, "--format=json", f"--out={out}"]) == 0
    lines = warnings_of(caplog)
    assert len(lines) == 3, lines
    tiny, silent, cut = lines
    assert tiny.startswith(f"{files['tiny']}: 0.010 s long") and "model's clip (1.00 s)" in tiny
    assert "scored anyway" in tiny and "mostly zero padding" in tiny
    assert silent.startswith(f"{files['silent']}: silent") and "scored anyway" in silent
    assert cut.startswith(f"{files['truncated']}: truncated") and "16000 bytes" in cut and "missing" in cut
    assert not any(str(files["normal"]) in line for line in lines)
    results = {Path(r["file"]).stem: r for r in json.loads(out.read_text())}
    assert all(len(r["top"]) == 4 for r in results.values())  # every file scored
    assert "warning" not in results["normal"] and results["tiny"]["warning"] == tiny


def test_many_suspicious_files_show_the_first_then_a_count(tmp_path, caplog):
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    folder = tmp_path / "silent"
    folder.mkdir()
    for i in range(SHOWN + 3):
        sf.write(folder / f"s{i:02d}.wav", np.zeros(SR, np.float32), SR)
    with caplog.at_level(logging.WARNING):
        assert main(["predict", f"--ckpt_path={ckpt}", "--files", str(folder), f"--out={tmp_path / 'o.txt'}"]) == 0
    lines = warnings_of(caplog)
    assert len(lines) == SHOWN + 1
    assert [Path(line.split(":")[0]).name for line in lines[:SHOWN]] == [f"s{i:02d}.wav" for i in range(SHOWN)]
    assert lines[-1] == f"... and 3 more suspicious files ({SHOWN + 3} in all)"


def test_warning_summary_counts_only_what_it_held_back():
    shown = []
    summary = WarningSummary(shown.append, shown=2)
    for line in ["a", None, "b"]:
        summary.add(line)
    summary.close()
    assert shown == ["a", "b"]  # nothing held back, no count line


def test_explain_warns_on_a_10_ms_clip_and_still_writes_the_image(files, tmp_path, caplog):
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    with caplog.at_level(logging.WARNING):
        assert main(["explain", f"--ckpt_path={ckpt}", str(files["tiny"]), f"--out={tmp_path / 's.png'}"]) == 0
        assert main(["explain", f"--ckpt_path={ckpt}", str(files["normal"]), f"--out={tmp_path / 'n.png'}"]) == 0
    lines = warnings_of(caplog)
    assert len(lines) == 1 and lines[0].startswith(f"{files['tiny']}: 0.010 s long") and "explained anyway" in lines[0]
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "n.png").is_file()


def test_data_verify_names_short_silent_and_truncated_files(tmp_path, capsys):
    from tests.test_data_download import _fsdd_zip

    with zipfile.ZipFile(io.BytesIO(_fsdd_zip())) as zf:
        zf.extractall(tmp_path)
    rec = tmp_path / "free-spoken-digit-dataset-master" / "recordings"  # 60 clips of 0.2 s
    sf.write(rec / "1_anna_0.wav", tone(0.01), SR)
    sf.write(rec / "2_anna_0.wav", np.zeros(1600, np.float32), SR)
    data = (rec / "3_anna_0.wav").read_bytes()
    (rec / "3_anna_0.wav").write_bytes(data[: len(data) // 2])
    assert main(["data", "verify", "fsdd", "--root", str(tmp_path)]) == 0  # warnings are not problems
    out = capsys.readouterr().out.splitlines()
    warned = [line for line in out if line.startswith("warning: ")]
    assert len(warned) == 3, out
    assert "1_anna_0.wav: 0.010 s long" in warned[0] and "median clip of fsdd (0.20 s)" in warned[0]
    assert "2_anna_0.wav: silent" in warned[1] and "3_anna_0.wav: truncated" in warned[2]
    assert out[-1] == "fsdd: every file decodes, 3 suspicious (see the warnings)"


def test_fit_warns_about_suspicious_clips_and_trains_on(tmp_path, tiny_args, caplog):
    from tests.test_data import _tree

    root = _tree(tmp_path / "ds", classes=4, clips_per_fold=3)  # 60 tones of 1 s, ESC-50 layout
    audio = root / "audio"
    sf.write(audio / "2-01-A-0.wav", tone(0.01), SR)
    sf.write(audio / "3-12-A-1.wav", np.zeros(SR, np.float32), SR)
    chopped(audio / "4-20-A-2.wav", 0.2)  # 0.2 s left: truncated and short
    args = esc50_args(tiny_args, root)
    with caplog.at_level(logging.WARNING):
        assert main(["fit", *args, "--trainer.fast_dev_run=true"]) == 0
    lines = [line for line in warnings_of(caplog) if "kept in the dataset" in line]
    assert len(lines) == 3, warnings_of(caplog)
    short, silent, cut = lines
    assert short.startswith(f"{audio / '2-01-A-0.wav'}: 0.010 s long") and "ESC50DataModule (1.00 s)" in short
    assert silent.startswith(f"{audio / '3-12-A-1.wav'}: silent")
    assert cut.startswith(f"{audio / '4-20-A-2.wav'}: truncated (") and "s long, under 25%" in cut


def test_normal_clips_give_no_warning(tmp_path, tiny_args, caplog):
    """The same fit on the untouched tones, and predict on a normal clip: not one suspicious-audio line."""
    from tests.test_data import _tree

    root = _tree(tmp_path / "ds", classes=4, clips_per_fold=3)
    args = esc50_args(tiny_args, root)
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    with caplog.at_level(logging.WARNING):
        assert main(["fit", *args, "--trainer.fast_dev_run=true"]) == 0
        assert main(["predict", f"--ckpt_path={ckpt}", "--files", str(root / "audio" / "1-00-A-0.wav")]) == 0
    assert not [line for line in warnings_of(caplog) if "anyway" in line or "kept in the dataset" in line]
