"""``audiocls embed --ckpt_path best.ckpt --files a.wav dir/ --out emb.npy``: one feature vector per audio file.

The vector is the backbone's pooled penultimate features (timm's ``forward_head(..., pre_logits=True)``: what the
classifier layer sees), averaged over the sliding windows of a long recording exactly as ``audiocls predict``
averages probabilities. Outputs, written atomically after the path is checked and before any file is read:

* ``.npy``: a float32 array (N, D), with the file names one per line in ``<out stem>.files.txt`` beside it;
* ``.npz``: ``embeddings`` (N, D) and ``files`` (N,) in one file (``np.load(path)``, no pickle needed);
* ``.csv``: a header ``file,e0,...,e{D-1}`` and one row per file.

A file that cannot be decoded is reported and left out; the exit code is then 1.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from audiocls.commands.parser import command_parser
from audiocls.commands.predict import expand_files
from audiocls.commands.scoring import map_windows, shown
from audiocls.data.io import load_audio
from audiocls.errors import AudioLoadError, ConfigError
from audiocls.files import atomic_write_bytes, check_output_file
from audiocls.training.checkpoints import LoadedModel, load_checkpoint

__all__ = ["embed_files", "write_embeddings", "main"]

log = logging.getLogger(__name__)

SUFFIXES = (".npy", ".npz", ".csv")


def penultimate(loaded: LoadedModel, spec: torch.Tensor) -> torch.Tensor:
    """spec (b, C, n_mels, frames) -> pooled features before the classifier layer (b, D)."""
    backbone = loaded.model.backbone
    features = backbone.forward_features(loaded.model.backbone_input(spec))
    return backbone.forward_head(features, pre_logits=True).flatten(1)


def embed_files(
    loaded: LoadedModel, files: list[Path], *, hop_seconds: float | None = None, batch_size: int = 16
) -> tuple[np.ndarray, list[str], list[str]]:
    """Embed every file that decodes.

    Returns:
        ``embeddings (N, D)`` float32, the ``N`` file names embedded (in order), and the error lines of the
        files that failed.
    """
    vectors, names, errors = [], [], []
    for f in files:
        try:
            wave = load_audio(f, loaded.sample_rate)
        except AudioLoadError as err:
            log.warning("%s", shown(err))
            errors.append(str(err))
            continue
        mean, _, _ = map_windows(
            loaded, wave, lambda spec: penultimate(loaded, spec), hop_seconds=hop_seconds, batch_size=batch_size
        )
        vectors.append(mean.astype(np.float32))
        names.append(str(f))
    embeddings = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)
    return embeddings, names, errors


def names_file(out: Path) -> Path:
    """The file names beside an ``.npy`` output: ``emb.npy`` -> ``emb.files.txt``."""
    return out.with_name(out.stem + ".files.txt")


def write_embeddings(out: Path, embeddings: np.ndarray, names: list[str]) -> list[Path]:
    """Write ``embeddings (N, D)`` and ``names`` to ``out`` (``.npy``, ``.npz`` or ``.csv``); returns the paths.

    Names are written as the file system gives them: UTF-8, and the original bytes of a name that is not UTF-8.
    """
    suffix = out.suffix.lower()
    if suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", *(f"e{i}" for i in range(embeddings.shape[1]))])
        writer.writerows([name, *(repr(float(v)) for v in row)] for name, row in zip(names, embeddings, strict=True))
        atomic_write_bytes(out, buf.getvalue().encode("utf-8", "surrogateescape"))
        return [out]
    buf = io.BytesIO()
    if suffix == ".npz":
        np.savez(buf, embeddings=embeddings, files=np.asarray(names, dtype=str))
        atomic_write_bytes(out, buf.getvalue())
        return [out]
    np.save(buf, embeddings)
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(names_file(out), "".join(f"{name}\n" for name in names).encode("utf-8", "surrogateescape"))
    return [out, names_file(out)]


def build_parser():
    p = command_parser("embed", "Pooled penultimate features of audio files from a checkpoint of 'audiocls fit'.")
    p.add_argument("--ckpt_path", required=True, help="the .ckpt written by 'audiocls fit'")
    p.add_argument("--files", nargs="+", required=True, help="audio files and folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output file: .npy (+ .files.txt), .npz or .csv")
    p.add_argument(
        "--hop_seconds", type=float, default=None, help="step between windows on long audio (default: half a clip)"
    )
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return p


def main(argv: list[str]) -> int:
    """``audiocls embed --ckpt_path X --files ... --out emb.npy``; returns 0, or 1 when some file failed."""
    args = build_parser().parse_args(argv)
    if args.out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--out={args.out}: the name must end in {', '.join(SUFFIXES)}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size={args.batch_size} must be at least 1")
    out = check_output_file(args.out)  # before any file is read
    if out.suffix.lower() == ".npy":
        check_output_file(names_file(out))
    loaded = load_checkpoint(args.ckpt_path).to(torch.device(args.device))
    files = expand_files(args.files)
    embeddings, names, errors = embed_files(loaded, files, hop_seconds=args.hop_seconds, batch_size=args.batch_size)
    if not names:
        raise ConfigError(f"none of the {len(files)} files could be decoded: {'; '.join(errors[:3])}")
    for path in write_embeddings(out, embeddings, names):
        print(f"wrote {path}", file=sys.stderr)
    print(f"{len(names)} embeddings of dimension {embeddings.shape[1]}", file=sys.stderr)
    if errors:
        print(
            f"audiocls embed: {len(errors)} of {len(files)} files failed: {shown('; '.join(errors))}", file=sys.stderr
        )
        return 1
    return 0
