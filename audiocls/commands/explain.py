"""``audiocls explain --ckpt_path best.ckpt clip.wav --out saliency.png``: where the model hears the class.

Two views per class, drawn over the log-mel image with time (s) and mel-frequency (Hz) axes:

- the paper's: the gradient of the class score (logit) with respect to the input spectrogram, ``|d score /
  d spec|``, one panel per channel (per STFT resolution);
- Grad-CAM on the last convolutional stage (timm's ``forward_features``): the stage's activations weighted by
  their mean gradient, rectified and upsampled to the image.

``--top_k`` classes (or every ``--target``) are rows of one figure. :func:`compute_saliency` returns the arrays.
A recording longer than the training clip is explained on its window where the first class scores highest
(or from ``--start_seconds``).
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audiocls.commands.parser import command_parser
from audiocls.commands.scoring import score_wave, shown, suspicious_input
from audiocls.data.io import load_audio, pad_or_crop
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_bytes, check_output_file
from audiocls.training.checkpoints import LoadedModel, load_checkpoint

__all__ = [
    "Saliency",
    "compute_saliency",
    "explain_wave",
    "saliency_png",
    "resolve_targets",
    "plot_saliency",
    "mel_centres_hz",
    "main",
]

log = logging.getLogger(__name__)


@dataclass
class Saliency:
    """Saliency of one clip for some classes.

    Attributes:
        spec: the log-mel input, (C, n_mels, frames).
        grad: ``|d logit / d spec|`` per target, (K, C, n_mels, frames).
        gradcam: Grad-CAM per target upsampled to the image, (K, n_mels, frames), in [0, 1]; ``None`` when the
            backbone has no 4-D convolutional feature map.
        targets: the K class indices.
        probs: the clip's class probabilities, (num_classes,).
    """

    spec: np.ndarray
    grad: np.ndarray
    gradcam: np.ndarray | None
    targets: list[int]
    probs: np.ndarray


def compute_saliency(loaded: LoadedModel, wave: np.ndarray, targets: list[int]) -> Saliency:
    """Gradient saliency and Grad-CAM of ``wave (T,)`` (one training clip long) for the ``targets`` classes.

    Args:
        loaded: model and frontend from :func:`~audiocls.training.checkpoints.load_checkpoint`.
        wave: (clip_samples,) float32 at ``loaded.sample_rate``; shorter is zero-padded, longer is centre-cropped.
        targets: class indices.
    """
    backbone = loaded.model.eval().backbone
    device = loaded.device
    wave_t = torch.from_numpy(pad_or_crop(np.asarray(wave, np.float32), loaded.clip_samples)).to(device)
    with torch.no_grad():
        spec = loaded.frontend(wave_t[None])  # (1, C, n_mels, frames)
    spec.requires_grad_(True)
    x = loaded.model.backbone_input(spec)  # after AudioClassifier's input transform, if any
    feats = None
    if hasattr(backbone, "forward_features") and hasattr(backbone, "forward_head"):
        feats = backbone.forward_features(x)  # (1, D, h, w) for a CNN
        logits = backbone.forward_head(feats)
        if feats.ndim != 4:
            feats = None
    else:
        logits = backbone(x)
    grads, cams = [], []
    for i, t in enumerate(targets):
        inputs = [spec] if feats is None else [spec, feats]
        g = torch.autograd.grad(logits[0, t], inputs, retain_graph=i < len(targets) - 1)
        grads.append(g[0][0].abs())  # (C, n_mels, frames)
        if feats is not None:
            weights = g[1][0].mean(dim=(1, 2), keepdim=True)  # (D, 1, 1)
            cam = F.relu((weights * feats[0]).sum(0))[None, None]  # (1, 1, h, w)
            cam = F.interpolate(cam, size=spec.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            cams.append(cam / cam.max().clamp_min(1e-12))
    return Saliency(
        spec=spec[0].detach().cpu().numpy(),
        grad=torch.stack(grads).detach().cpu().numpy(),
        gradcam=torch.stack(cams).detach().cpu().numpy() if cams else None,
        targets=list(targets),
        probs=loaded.model.probabilities(logits[0:1].detach().float())[0].cpu().numpy(),
    )


def resolve_targets(names: list[str] | None, class_names: list[str]) -> list[int]:
    """Class indices of ``names``; :class:`ConfigError` listing the valid names for an unknown one."""
    out = []
    for name in names or []:
        if name not in class_names:
            raise ConfigError(f"--target={name!r} is not a class of this checkpoint; valid: {', '.join(class_names)}")
        out.append(class_names.index(name))
    return out


def mel_centres_hz(loaded: LoadedModel, n_rows: int) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_rows`` image rows (mel bands, after any resize)."""
    fb = loaded.frontend.fb  # (n_freq, n_mels)
    freqs = np.linspace(0, loaded.sample_rate / 2, fb.shape[0])
    centres = freqs[fb.argmax(0).cpu().numpy()]
    return np.interp(np.linspace(0, len(centres) - 1, n_rows), np.arange(len(centres)), centres)


def plot_saliency(sal: Saliency, loaded: LoadedModel, out: str | Path, *, title: str = "", dpi: int = 100) -> Path:
    """Draw :func:`saliency_png` to the file ``out``."""
    out = check_output_file(out)
    atomic_write_bytes(out, saliency_png(sal, loaded, title=title, dpi=dpi))
    return out


def saliency_png(sal: Saliency, loaded: LoadedModel, *, title: str = "", dpi: int = 100) -> bytes:
    """The PNG of one row per target: ``|grad|`` over each channel's log-mel, then Grad-CAM over their mean."""
    from audiocls.training.curves import new_figure

    n_ch, n_rows, _ = sal.spec.shape
    cols = n_ch + (sal.gradcam is not None)
    fig = new_figure(figsize=(3.4 * cols, 2.7 * len(sal.targets)), constrained_layout=True)
    axes = fig.subplots(len(sal.targets), cols, squeeze=False)
    extent = (0.0, loaded.clip_seconds, -0.5, n_rows - 0.5)
    hz = mel_centres_hz(loaded, n_rows)
    ticks = np.linspace(0, n_rows - 1, 5).round().astype(int)
    cfg = loaded.frontend.config
    for r, t in enumerate(sal.targets):
        name = f"{loaded.class_names[t]} (p={sal.probs[t]:.2f})"
        views = [
            (sal.spec[c], sal.grad[r, c], f"{name}\n|d score/d spec|, {cfg.windows_ms[c]:g} ms") for c in range(n_ch)
        ]
        if sal.gradcam is not None:
            views.append((sal.spec.mean(0), sal.gradcam[r], f"{name}\nGrad-CAM, last conv stage"))
        for ax, (image, heat, label) in zip(axes[r], views, strict=True):
            ax.set_facecolor("black")
            ax.imshow(image, origin="lower", aspect="auto", cmap="gray", alpha=0.5, extent=extent)
            # display only: scaled to the 99th percentile, so a few extreme pixels do not hide the rest
            heat = np.clip(heat / max(float(np.percentile(heat, 99)), 1e-12), 0.0, 1.0)
            ax.imshow(heat, origin="lower", aspect="auto", cmap="inferno", alpha=0.9 * heat, extent=extent)
            ax.set_title(label, fontsize=8)
            ax.set_yticks(ticks, [f"{hz[i]:.0f}" for i in ticks], fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel("time (s)", fontsize=7)
            ax.set_ylabel("mel band centre (Hz)", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    return buf.getvalue()


def explain_wave(
    loaded: LoadedModel, wave: np.ndarray, targets: list[int], *, top_k: int = 1, start_seconds: float | None = None
) -> tuple[Saliency, int, int]:
    """:func:`compute_saliency` of the clip of ``wave (T,)`` worth explaining.

    A recording longer than the clip is explained from ``start_seconds``, else on its window where the first
    target (or the most probable class) scores highest. Without ``targets``, the ``top_k`` most probable classes
    of that clip are explained.

    Returns:
        The saliency, the clip's start and its length in samples.
    """
    clip, sr = loaded.clip_samples, loaded.sample_rate
    if start_seconds is not None:
        start = min(max(0, round(start_seconds * sr)), max(0, len(wave) - clip))
    elif len(wave) > clip:  # the window where the (first) explained class is most probable
        probs, window_probs, starts = score_wave(loaded, wave)
        first = targets[0] if targets else int(probs.argmax())
        start = int(starts[window_probs[:, first].argmax()])
    else:
        start = 0
    segment = wave[start : start + clip]
    if not targets:
        with torch.no_grad():
            p = loaded.model.probabilities(
                loaded.wave_classifier()(torch.from_numpy(pad_or_crop(segment, clip)).to(loaded.device)[None])
            )[0]
        targets = p.argsort(descending=True)[: min(top_k, len(loaded.class_names))].tolist()
    return compute_saliency(loaded, segment, targets), start, len(segment)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "explain", "Gradient saliency (the paper's view) and Grad-CAM of one audio file, from a checkpoint."
    )
    p.add_argument("file", type=Path, help="the audio file")
    p.add_argument("--ckpt_path", required=True, help="the .ckpt written by 'audiocls fit'")
    p.add_argument("--out", type=Path, default=Path("saliency.png"), help="the PNG to write (default saliency.png)")
    p.add_argument("--target", action="append", default=None, help="class name to explain (repeatable)")
    p.add_argument("--top_k", type=int, default=1, help="without --target: explain the k most probable classes")
    p.add_argument("--start_seconds", type=float, default=None, help="where the explained clip starts in a long file")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (default 100)")
    p.add_argument("--save_arrays", type=Path, default=None, help="also write the arrays (spec, grad, gradcam) to .npz")
    return p


def main(argv: list[str]) -> int:
    """``audiocls explain``."""
    args = build_parser().parse_args(argv)
    check_output_file(args.out)  # before the model is loaded
    if args.save_arrays is not None:
        check_output_file(args.save_arrays, setting="--save_arrays")
    loaded = load_checkpoint(args.ckpt_path)
    names = loaded.class_names
    targets = resolve_targets(args.target, names)
    if args.top_k < 1:
        raise ConfigError(f"--top_k={args.top_k} must be at least 1")
    wave = load_audio(args.file, loaded.sample_rate)
    warning = suspicious_input(loaded, args.file, wave, "explained anyway")
    if warning:
        log.warning("%s", warning)
    sal, start, length = explain_wave(loaded, wave, targets, top_k=args.top_k, start_seconds=args.start_seconds)
    targets, sr = sal.targets, loaded.sample_rate
    span = f"{start / sr:.2f}-{(start + length) / sr:.2f} s"
    out = plot_saliency(sal, loaded, args.out, title=f"{shown(args.file.name)} [{span}]", dpi=args.dpi)
    if args.save_arrays is not None:
        np.savez_compressed(
            args.save_arrays, spec=sal.spec, grad=sal.grad, targets=np.array(sal.targets), probs=sal.probs,
            **({"gradcam": sal.gradcam} if sal.gradcam is not None else {}),
        )  # fmt: skip
    print(f"wrote {out}: {', '.join(names[t] for t in targets)} on {shown(args.file)} [{span}]")
    return 0
