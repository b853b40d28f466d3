"""Fuzz the audio loader: every malformed file gives ``AudioLoadError`` naming the file, never a crash or a hang.

The cases are generated from one seed (reproducible, listed by name on failure): random bytes under audio
suffixes, real WAV / FLAC / OGG / AU files truncated at many lengths, their headers with corrupted bytes,
valid headers over random bodies, and special files (empty, a folder, missing, NaN and infinite samples, a
header declaring no frames). They are decoded in a child process with a per-file alarm and faulthandler, so
a segfault or a hang in libsndfile fails the test with the file's name instead of killing or stalling pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SEED = 20240607
#: (format, subtype, suffix) of the valid files the corruptions start from
FORMATS = [
    ("WAV", "PCM_16", ".wav"),
    ("WAV", "FLOAT", ".wav"),
    ("FLAC", "PCM_16", ".flac"),
    ("OGG", "VORBIS", ".ogg"),
    ("AU", "PCM_24", ".au"),
]
TRUNCATIONS = [0, 1, 4, 8, 12, 16, 24, 36, 43, 44, 45, 60, 100, 200, 500]
PER_FILE_SECONDS = 10

RUNNER = textwrap.dedent(
    """
    import faulthandler, json, signal, sys
    from audiocls.data.io import load_audio
    from audiocls.errors import AudioLoadError

    faulthandler.enable()

    def hang(signum, frame):
        raise TimeoutError("hang")

    signal.signal(signal.SIGALRM, hang)
    for path in json.load(open(sys.argv[1])):
        print("START", path, flush=True)
        signal.alarm(int(sys.argv[2]))
        try:
            wave = load_audio(path, 8000)
            ok = wave.ndim == 1 and wave.dtype.name == "float32" and bool((abs(wave) < float("inf")).all())
            result = {"outcome": "decoded" if ok else "bad-output", "samples": int(wave.shape[0])}
        except AudioLoadError as err:
            result = {"outcome": "AudioLoadError", "names_file": path in str(err)}
        except TimeoutError:
            result = {"outcome": "hang"}
        except BaseException as err:
            result = {"outcome": f"other:{type(err).__name__}: {err}"}
        signal.alarm(0)
        print("RESULT", json.dumps({"path": path, **result}), flush=True)
    """
)


def _valid(folder: Path, fmt: str, subtype: str, suffix: str, rng: np.random.Generator) -> bytes:
    path = folder / f"valid-{fmt}-{subtype}{suffix}"
    wave = (0.3 * np.sin(np.arange(8000) * 0.05) + 0.01 * rng.standard_normal(8000)).astype(np.float32)
    sf.write(path, wave, 8000, format=fmt, subtype=subtype)
    data = path.read_bytes()
    path.unlink()
    return data


def make_cases(folder: Path, seed: int = SEED) -> tuple[list[str], set[str]]:
    """Write the malformed files; returns (every path, the paths that must raise rather than decode)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    must_fail: set[str] = set()

    def add(name: str, data: bytes, fail: bool) -> None:
        path = folder / name
        path.write_bytes(data)
        paths.append(str(path))
        if fail:
            must_fail.add(str(path))

    for suffix in (".wav", ".flac", ".ogg", ".mp3", ".au", ""):
        for i in range(6):
            # libsndfile reads a headerless .au file as raw audio: noise, not an error (see docs/RELIABILITY.md)
            add(f"random-{i}{suffix or '.bin'}", rng.bytes(int(rng.integers(1, 4096))), fail=suffix != ".au")
    for fmt, subtype, suffix in FORMATS:
        data = _valid(folder, fmt, subtype, suffix, rng)
        tag = f"{fmt}-{subtype}"
        for n in TRUNCATIONS:
            if n < len(data):
                add(f"trunc-{tag}-{n}{suffix}", data[:n], fail=n < 12 and fmt != "AU")
        for frac in (0.25, 0.5, 0.9):
            add(f"trunc-{tag}-{frac}{suffix}", data[: int(len(data) * frac)], fail=False)
        for i in range(12):  # corrupt bytes of the header
            buf = bytearray(data)
            for pos in rng.integers(0, min(64, len(buf)), size=int(rng.integers(1, 5))):
                buf[pos] = int(rng.integers(0, 256))
            add(f"header-{tag}-{i}{suffix}", bytes(buf), fail=False)
        for i in range(4):  # a valid header over random bytes
            add(f"body-{tag}-{i}{suffix}", data[:64] + rng.bytes(int(rng.integers(0, 8192))), fail=False)
        add(f"magic-only-{tag}{suffix}", data[:4], fail=fmt != "AU")
    add("empty.wav", b"", fail=True)
    add("text.wav", b"this is not audio\n" * 20, fail=True)
    add("riff-no-wave.wav", b"RIFF\x24\x00\x00\x00JUNKJUNK" + bytes(32), fail=True)
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        wave = np.zeros(800, np.float32)
        wave[100] = value
        sf.write(folder / f"{name}.wav", wave, 8000, subtype="FLOAT")
        paths.append(str(folder / f"{name}.wav"))
        must_fail.add(str(folder / f"{name}.wav"))
    sf.write(folder / "no-frames.wav", np.zeros(0, np.float32), 8000)
    paths.append(str(folder / "no-frames.wav"))
    must_fail.add(str(folder / "no-frames.wav"))
    (folder / "a-folder.wav").mkdir()
    for special in ("a-folder.wav", "missing.wav"):
        paths.append(str(folder / special))
        must_fail.add(str(folder / special))
    return paths, must_fail


def _run(paths: list[str], tmp_path: Path) -> dict[str, dict]:
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(paths))
    (tmp_path / "runner.py").write_text(RUNNER)
    timeout = 120 + len(paths) // 10
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(listing), str(PER_FILE_SECONDS)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    started = [line[6:] for line in proc.stdout.splitlines() if line.startswith("START ")]
    results = {
        r["path"]: r for r in (json.loads(line[7:]) for line in proc.stdout.splitlines() if line[:7] == "RESULT ")
    }
    if proc.returncode != 0:
        pytest.fail(
            f"the loader crashed the process (exit {proc.returncode}) on {started[-1:]}:\n{proc.stderr[-2000:]}"
        )
    return results


def test_malformed_audio_gives_audio_load_error_naming_the_file(tmp_path):
    paths, must_fail = make_cases(tmp_path / "fuzz")
    assert len(paths) >= 200
    results = _run(paths, tmp_path)
    assert set(results) == set(paths)
    wrong = {p: r["outcome"] for p, r in results.items() if r["outcome"] not in ("AudioLoadError", "decoded")}
    assert not wrong, f"crash, hang or foreign exception: {wrong}"
    unnamed = [p for p, r in results.items() if r["outcome"] == "AudioLoadError" and not r["names_file"]]
    assert not unnamed, f"errors that do not name the file: {unnamed}"
    decoded_bad = sorted(p for p in must_fail if results[p]["outcome"] != "AudioLoadError")
    assert not decoded_bad, f"files with no audio that decoded anyway: {decoded_bad}"
    failed = sum(r["outcome"] == "AudioLoadError" for r in results.values())
    print(f"{len(paths)} malformed files: {failed} AudioLoadError, {len(paths) - failed} decoded to finite audio")


def test_intact_files_of_every_format_decode(tmp_path):
    """The control: the files the corruptions start from decode to the written wave's length."""
    rng = np.random.default_rng(SEED)
    from audiocls.data.io import load_audio

    for fmt, subtype, suffix in FORMATS:
        path = tmp_path / f"ok-{fmt}-{subtype}{suffix}"
        path.write_bytes(_valid(tmp_path, fmt, subtype, suffix, rng))
        wave = load_audio(path, 8000)
        assert wave.shape == (8000,) and np.isfinite(wave).all() and np.abs(wave).max() > 0.1, (fmt, subtype)
