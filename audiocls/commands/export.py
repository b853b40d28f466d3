"""``audiocls export --ckpt_path best.ckpt --format onnx|torchscript --out FILE``: one waveform-in model.

The exported model maps ``wave (B, T)`` -- mono float32 at the training sample rate, T the training clip length
-- to ``logits (B, num_classes)``, the log-mel frontend included, with a dynamic batch axis. Class names,
sample rate and clip length are stored in the file (ONNX ``metadata_props``; TorchScript ``_extra_files``
``metadata.json``). After writing, the file is loaded back and run (onnxruntime / ``torch.jit.load``) on audio
next to the checkpoint's PyTorch model; the command fails when the logits differ by more than ``--tolerance``
(max abs difference divided by ``max(1, max |logit|)``).

ONNX has no exportable ``torch.stft``, so the ONNX model computes the same log-mel with :class:`DFTLogMel`:
the STFT as a strided ``conv1d`` with a fixed DFT basis, reflect padding as a fixed gather, and the
antialiased bilinear resize as two fixed matrices. The TorchScript model traces the training frontend itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from audiocls.audio.dft import DFTLogMel
from audiocls.commands.parser import command_parser
from audiocls.data.io import AUDIO_EXTENSIONS, load_audio, pad_or_crop
from audiocls.errors import AudioLoadError, ConfigError
from audiocls.files import check_output_file, partial_path
from audiocls.models.wave import WaveClassifier
from audiocls.training.checkpoints import LoadedModel, load_checkpoint

__all__ = ["export_model", "export_onnx", "export_torchscript", "check_parity", "read_metadata", "main"]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
DEFAULT_TOLERANCE = 1e-3


def metadata(loaded: LoadedModel) -> dict[str, str]:
    """What a consumer of the exported file needs, as strings."""
    meta = {
        "class_names": json.dumps(loaded.class_names),
        "sample_rate": str(loaded.sample_rate),
        "clip_samples": str(loaded.clip_samples),
        "input": f"wave (batch, {loaded.clip_samples}) float32, mono, {loaded.sample_rate} Hz",
        "output": f"logits (batch, {len(loaded.class_names)})",
        # the task's name and what turns the logits into scores (softmax; independent per-class sigmoids)
        "task": loaded.model.task,
        "activation": loaded.model.task_type.activation,
        "backbone": str(loaded.model.hparams.get("backbone", "")),
        "producer": "audiocls export",
    }
    if loaded.model.task_type.thresholded:  # the decision rule predict uses: score >= threshold of the class
        meta["thresholds"] = json.dumps([round(float(t), 6) for t in loaded.model.thresholds.tolist()])
        meta["thresholds_tuned"] = str(bool(loaded.model.thresholds_tuned)).lower()
    return meta


def export_onnx(loaded: LoadedModel, out: Path, *, opset: int = 17) -> None:
    """Write the waveform-in ONNX model with a dynamic batch axis and :func:`metadata` as ``metadata_props``."""
    import onnx

    model = WaveClassifier(DFTLogMel(loaded.frontend, loaded.clip_samples), loaded.model).eval()
    example = torch.zeros(2, loaded.clip_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,  # the TorchScript-based exporter: no onnxscript needed
            input_names=["wave"],
            output_names=["logits"],
            dynamic_axes={"wave": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
        )
    proto = onnx.load(str(out))
    for key, value in metadata(loaded).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))


def export_torchscript(loaded: LoadedModel, out: Path) -> None:
    """Write the traced waveform-in model with :func:`metadata` as ``metadata.json`` in ``_extra_files``."""
    model = loaded.wave_classifier()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(2, loaded.clip_samples), check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"metadata.json": json.dumps(metadata(loaded))})


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported file (``.onnx`` or TorchScript), as written by :func:`metadata`."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    extra = {"metadata.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["metadata.json"])


def run_exported(path: Path, fmt: str, wave: np.ndarray) -> np.ndarray:
    """logits (B, num_classes) of the exported file on ``wave (B, T)``."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"wave": wave.astype(np.float32)})[0]
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(torch.from_numpy(wave)).numpy()


def parity_audio(loaded: LoadedModel, files: list[Path] | None, *, max_files: int = 4) -> tuple[np.ndarray, str]:
    """wave (B, clip_samples) to compare on, and where it came from.

    ``files`` when given; else up to ``max_files`` audio files of the training data root stored in the
    checkpoint; else (no data at hand) a synthetic mix of tones, a chirp and noise.
    """
    if not files:
        from audiocls.commands.predict import expand_files

        root = loaded.data_hparams.get("root")
        if root and Path(root).is_dir():
            found = sorted(f for f in Path(root).rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
            files = found[:: max(1, len(found) // max_files)][:max_files]
        files = expand_files(files) if files else []
    waves, used = [], []
    for f in files:
        try:
            waves.append(pad_or_crop(load_audio(f, loaded.sample_rate), loaded.clip_samples))
            used.append(str(f))
        except AudioLoadError as err:
            log.warning("parity check skips %s", err)
    if waves:
        return np.stack(waves), f"{len(waves)} audio files ({', '.join(Path(u).name for u in used)})"
    rng = np.random.default_rng(0)
    t = np.arange(loaded.clip_samples) / loaded.sample_rate
    nyq = loaded.sample_rate / 2
    synth = [
        0.5 * np.sin(2 * np.pi * 0.05 * nyq * t),
        0.3 * np.sin(2 * np.pi * np.cumsum(np.linspace(0.02, 0.6, len(t)) * nyq) / loaded.sample_rate),
        0.1 * rng.standard_normal(len(t)),
    ]
    return np.stack(synth).astype(np.float32), "3 synthetic signals (no audio files found; pass --check_files)"


def check_parity(loaded: LoadedModel, path: Path, fmt: str, wave: np.ndarray) -> float:
    """Relative max logit error of the exported file against the PyTorch model: max |a - b| / max(1, max |b|)."""
    with torch.no_grad():  # the PyTorch reference: the Lightning model on the training frontend
        ref = loaded.model(loaded.frontend(torch.from_numpy(wave))).numpy()
    got = run_exported(path, fmt, wave)
    if got.shape != ref.shape:
        raise ConfigError(f"exported model {path} returns shape {got.shape}, expected {ref.shape}")
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def export_model(
    ckpt_path: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    check_files: list[Path] | None = None,
) -> float:
    """Export the checkpoint's waveform-in model to ``out`` and check it; returns the parity error.

    The model is written to a temporary file beside ``out`` (:func:`~audiocls.files.partial_path`) and renamed
    to ``out`` only after the parity check passes: a failed check or a kill keeps the previous ``out``.

    Raises:
        ConfigError: unknown format, an ``out`` that cannot be written, or the exported model differs from the
            PyTorch model by more than ``tolerance`` (the file is kept for inspection, as ``*.failed``).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r} is not one of {', '.join(FORMATS)}")
    out = check_output_file(out)
    loaded = load_checkpoint(ckpt_path)
    tmp = partial_path(out)
    try:
        (export_onnx if fmt == "onnx" else export_torchscript)(loaded, tmp)
        wave, source = parity_audio(loaded, check_files)
        err = check_parity(loaded, tmp, fmt, wave)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not err <= tolerance:
        failed = out.with_name(out.name + ".failed")
        tmp.replace(failed)
        raise ConfigError(
            f"exported {fmt} model differs from the PyTorch model: relative max logit error {err:.2e} > "
            f"--tolerance={tolerance:g} on {source}; the file is kept as {failed}"
        )
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(out)
    log.info("parity on %s: relative max logit error %.2e (tolerance %g)", source, err, tolerance)
    print(f"exported {out} ({fmt}); parity vs PyTorch: relative max logit error {err:.2e} <= {tolerance:g} on {source}")
    return err


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "export", "Export a checkpoint as one waveform-in model (frontend included) and check it against PyTorch."
    )
    p.add_argument("--ckpt_path", required=True, help="the .ckpt written by 'audiocls fit'")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--out", type=Path, required=True, help="the file to write (model.onnx, model.pt)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest accepted max |logit difference| / max(1, max |logit|) (default 1e-3)",
    )
    p.add_argument(
        "--check_files", nargs="+", type=Path, default=None, help="audio for the parity check (default: training data)"
    )
    return p


def main(argv: list[str]) -> int:
    """``audiocls export``; exit code 0, or 2 (via :class:`ConfigError`) when the parity check fails."""
    args = build_parser().parse_args(argv)
    export_model(args.ckpt_path, args.out, args.format, tolerance=args.tolerance, check_files=args.check_files)
    return 0
