"""``audiocls predict --ckpt_path best.ckpt --files a.wav b.flac dir/``: top-k classes of any audio file.

Files of any length, sample rate, channel count and format soundfile reads; folders expand to the audio files
under them. A recording longer than the training clip is scored over sliding windows (``--hop_seconds``) and
the window probabilities are averaged; ``--per_window`` shows each window, and JSON always carries them.
A file that cannot be decoded is reported on its own line and the others are still scored; the exit code is 1
when any file failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from audiocls.commands.parser import command_parser
from audiocls.commands.scoring import score_wave, shown, suspicious_input
from audiocls.data.io import AUDIO_EXTENSIONS, load_audio
from audiocls.data.suspicious import WarningSummary
from audiocls.errors import AudioLoadError, ConfigError
from audiocls.files import atomic_write_bytes, check_output_file
from audiocls.models.multilabel import THRESHOLD
from audiocls.training.checkpoints import LoadedModel, load_checkpoint

__all__ = [
    "expand_files",
    "predict_files",
    "describe_scores",
    "choose_thresholds",
    "format_results",
    "write_output",
    "Progress",
    "main",
]

log = logging.getLogger(__name__)

FORMATS = ("table", "json", "csv")
#: seconds between progress lines on stderr (files done, and windows done within a long file)
PROGRESS_SECONDS = 60.0
#: files between progress lines, however fast they go
PROGRESS_FILES = 100


class Progress:
    """Progress lines on stderr for a long run (stdout stays the results alone): after every
    :data:`PROGRESS_FILES` files, and once :data:`PROGRESS_SECONDS` have passed since the last line, within a
    long file too."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.name = total, 0, ""
        self.t0 = self.last = time.monotonic()

    def _due(self) -> bool:
        return time.monotonic() - self.last >= PROGRESS_SECONDS

    def _say(self, text: str) -> None:
        self.last = time.monotonic()
        print(f"predict: {text}, {self.last - self.t0:.0f} s elapsed", file=sys.stderr, flush=True)

    def start(self, path: Path) -> None:
        self.name = shown(path)

    def windows(self, done: int, total: int) -> None:
        if done < total and self._due():
            self._say(f"file {self.done + 1} of {self.total} ({self.name}): {done} of {total} windows")

    def file_done(self) -> None:
        self.done += 1
        if self._due() or self.done % PROGRESS_FILES == 0:
            self._say(f"{self.done} of {self.total} files")


def expand_files(paths: list[str | Path]) -> list[Path]:
    """The files to score: files as given (even missing ones, reported later), folders searched recursively.

    Raises:
        ConfigError: a folder holds no audio file.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise ConfigError(f"folder {p} holds no audio file ({', '.join(sorted(AUDIO_EXTENSIONS))})")
            out += found
        else:
            out.append(p)
    return out


def _top(probs, names: list[str], k: int, threshold=None) -> list[dict]:
    """The ``k`` best classes, or with a ``threshold`` (multi-label models: one number, or one per class) every
    class scoring at least its threshold."""
    order = probs.argsort()[::-1]
    if threshold is not None:
        per_class = np.broadcast_to(np.asarray(threshold, dtype=float), probs.shape)
        order = [i for i in order if probs[i] >= per_class[i]]
    else:
        order = order[:k]
    return [{"label": names[i], "probability": round(float(probs[i]), 6)} for i in order]


def predict_files(
    loaded: LoadedModel,
    files: list[Path],
    *,
    top_k: int = 5,
    hop_seconds: float | None = None,
    batch_size: int = 16,
    threshold: float | np.ndarray | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Score every file; a file that fails gives ``{"file", "error"}`` instead of stopping the batch.

    A suspicious file (truncated, silent, far shorter than the model's clip) is scored all the same, with a
    warning logged (the first few in full, then a count) and kept in its result as ``warning``. A ``progress``
    hears of each file and of each batch of windows.

    Returns:
        One dict per file: ``file``, ``duration_s``, ``top`` (the ``top_k`` classes of the averaged
        probabilities, as ``{"label", "probability"}``) and ``windows`` (``start_s``, ``end_s``, ``top``
        per window); or ``file`` and ``error``. With a ``threshold`` (multi-label models; one number, or
        ``(num_classes,)`` per-class thresholds) ``top`` holds every label scoring at least its threshold, best
        first (maybe none).
    """
    results = []
    sr = loaded.sample_rate
    summary = WarningSummary(log.warning)
    for f in files:
        if progress is not None:
            progress.start(f)
        try:
            wave = load_audio(f, sr)
        except AudioLoadError as err:
            log.warning("%s", shown(err))
            results.append({"file": str(f), "error": str(err)})
            if progress is not None:
                progress.file_done()
            continue
        warning = suspicious_input(loaded, f, wave, "scored anyway")
        summary.add(warning)
        probs, window_probs, starts = score_wave(
            loaded, wave, hop_seconds=hop_seconds, batch_size=batch_size,
            progress=progress.windows if progress is not None else None,
        )  # fmt: skip
        results.append(
            {"file": str(f)}
            | describe_scores(loaded, len(wave), probs, window_probs, starts, top_k=top_k, threshold=threshold)
            | ({"warning": warning} if warning else {})
        )
        if progress is not None:
            progress.file_done()
    summary.close()
    return results


def describe_scores(
    loaded: LoadedModel,
    num_samples: int,
    probs: np.ndarray,
    window_probs: np.ndarray,
    starts: np.ndarray,
    *,
    top_k: int = 5,
    threshold: float | np.ndarray | None = None,
) -> dict:
    """One recording's result from :func:`~audiocls.commands.scoring.score_wave`'s arrays: ``duration_s``,
    ``top`` and ``windows`` as :func:`predict_files` documents (``audiocls serve`` answers with the same)."""
    names, sr = loaded.class_names, loaded.sample_rate
    windows = [
        {
            "start_s": round(s / sr, 4),
            "end_s": round(min(s + loaded.clip_samples, num_samples) / sr, 4),
            "top": _top(p, names, top_k, threshold),
        }
        for s, p in zip(starts.tolist(), window_probs, strict=True)
    ]
    return {"duration_s": round(num_samples / sr, 4), "top": _top(probs, names, top_k, threshold), "windows": windows}


def choose_thresholds(loaded: LoadedModel, threshold: float | None) -> float | np.ndarray:
    """The decision threshold(s) of a multi-label model, said on stderr: ``threshold`` when given, else the
    checkpoint's per-class thresholds tuned on the validation split, else :data:`THRESHOLD`."""
    model = loaded.model
    if threshold is None and bool(getattr(model, "thresholds_tuned", False)):
        values = model.thresholds.detach().cpu().numpy().astype(float)
        shown = ", ".join(f"{n} {v:.3f}" for n, v in zip(loaded.class_names, values, strict=True))
        print(
            f"thresholds: per class, tuned on the validation split (--threshold X overrides): {shown}", file=sys.stderr
        )
        return values
    if threshold is None:
        print(f"threshold: {THRESHOLD} for every label (the checkpoint holds no tuned thresholds)", file=sys.stderr)
        return THRESHOLD
    print(f"threshold: {threshold} for every label (--threshold)", file=sys.stderr)
    return threshold


def format_results(results: list[dict], fmt: str = "table", *, per_window: bool = False) -> str:
    """Render :func:`predict_files` output as ``table`` (for people), ``json`` or ``csv``.

    CSV has one row per (file, rank) with ``scope=file``, plus per-window rows (``scope=window``) when
    ``per_window``; a failed file is one row with the ``error`` column set.

    A file name that is not UTF-8 is kept as the file system gives it in CSV (lone surrogates, written back as
    the original bytes by :func:`write_output`), escaped in JSON (``\\udce9``) and shown as ``\\xe9`` in the
    table.
    """
    if fmt == "json":
        return json.dumps(results, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "scope", "start_s", "end_s", "rank", "label", "probability", "error"])
        for r in results:
            if "error" in r:
                w.writerow([r["file"], "file", "", "", "", "", "", r["error"]])
                continue
            for rank, t in enumerate(r["top"], 1):
                w.writerow([r["file"], "file", 0.0, r["duration_s"], rank, t["label"], t["probability"], ""])
            for win in r["windows"] if per_window else []:
                for rank, t in enumerate(win["top"], 1):
                    w.writerow(
                        [r["file"], "window", win["start_s"], win["end_s"], rank, t["label"], t["probability"], ""]
                    )
        return buf.getvalue()
    if fmt != "table":
        raise ConfigError(f"--format={fmt!r} is not one of {', '.join(FORMATS)}")
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['file']}: FAILED: {r['error']}")
            continue
        n = len(r["windows"])
        head = f"{r['file']} ({r['duration_s']:.2f} s" + (f", mean of {n} windows)" if n > 1 else ")")
        lines.append(head)
        lines += [f"  {t['probability']:7.2%}  {t['label']}" for t in r["top"]] or ["  (no label over the threshold)"]
        for win in r["windows"] if per_window and n > 1 else []:
            best = ", ".join(f"{t['label']} {t['probability']:.2%}" for t in win["top"][:3])
            lines.append(f"    [{win['start_s']:8.2f} - {win['end_s']:8.2f} s]  {best}")
    return "\n".join(map(shown, lines)) + "\n"


def write_output(text: str, out: Path | None = None) -> None:
    """Write :func:`format_results` text to ``out`` (UTF-8), or to stdout, whatever stdout's encoding. A file name
    that is not UTF-8 (only CSV holds one unescaped) is written back as its original bytes."""
    if out is not None:
        atomic_write_bytes(out, text.encode("utf-8", "surrogateescape"))
        print(f"wrote {shown(out)}", file=sys.stderr)
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8: its bytes, beside UTF-8 text
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            sys.stdout.flush()
            buffer.write(text.encode("utf-8", "surrogateescape"))
            buffer.flush()
            return
        text = shown(text)  # a text stream with no bytes underneath
    sys.stdout.write(text)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("predict", "Top-k classes of audio files from a checkpoint written by 'audiocls fit'.")
    p.add_argument("--ckpt_path", required=True, help="the .ckpt written by 'audiocls fit'")
    p.add_argument("--files", nargs="+", required=True, help="audio files and folders (searched recursively)")
    p.add_argument("--top_k", type=int, default=5, help="classes shown per file (default 5; single-label models)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="multi-label models: every label whose sigmoid score is at least this is shown (default: the per-class "
        "thresholds tuned on the validation split and stored in the checkpoint, else 0.5)",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--out", type=Path, default=None, help="write the output to this file instead of stdout")
    p.add_argument(
        "--hop_seconds", type=float, default=None, help="step between windows on long audio (default: half a clip)"
    )
    p.add_argument("--per_window", action="store_true", help="also show every window (JSON always has them)")
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return p


def main(argv: list[str]) -> int:
    """``audiocls predict --ckpt_path X --files ...``; returns 0, or 1 when some file could not be scored."""
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top_k={args.top_k} must be at least 1")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size={args.batch_size} must be at least 1")
    out = check_output_file(args.out) if args.out is not None else None  # before any file is scored
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold={args.threshold} must lie in [0, 1]")
    loaded = load_checkpoint(args.ckpt_path).to(torch.device(args.device))
    threshold = choose_thresholds(loaded, args.threshold) if loaded.model.task_type.thresholded else None
    files = expand_files(args.files)
    t0, cpu0 = time.perf_counter(), time.process_time()
    results = predict_files(
        loaded, files, top_k=min(args.top_k, len(loaded.class_names)), hop_seconds=args.hop_seconds,
        batch_size=args.batch_size, threshold=threshold, progress=Progress(len(files)),
    )  # fmt: skip
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    text = format_results(results, args.format, per_window=args.per_window)
    write_output(text, out)
    failed = [r["file"] for r in results if "error" in r]
    log.info(
        "scored %d files in %.2f s wall (%.2f files/s), %.2f CPU-s per file",
        len(results) - len(failed), elapsed, len(files) / elapsed, cpu / max(1, len(files)),
    )  # fmt: skip
    if failed:
        print(
            f"audiocls predict: {len(failed)} of {len(files)} files failed: {shown(', '.join(failed))}", file=sys.stderr
        )
        return 1
    return 0
