"""Using a trained model: load a checkpoint with its frontend, and score audio of any length.

A checkpoint written by ``audiocls fit`` holds the model's hyperparameters (backbone, classes, channels) and
the datamodule's (sample rate, clip length, frontend settings), so :func:`load_checkpoint` rebuilds the
whole waveform -> logits path from the file alone, with no dataset at hand. :func:`score_wave` scores a
recording longer than the training clip over sliding windows and averages the probabilities.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiocls.data.base import AudioDataModule
from audiocls.data.io import pad_or_crop
from audiocls.errors import ConfigError
from audiocls.features import LogMelFrontend, build_frontend
from audiocls.model import AudioClassifier

__all__ = ["LoadedModel", "WaveClassifier", "load_checkpoint", "window_starts", "score_wave"]

log = logging.getLogger(__name__)

#: a recording at most this fraction longer than the clip is centre-cropped to one window, not slid over
SLACK = 0.05


class WaveClassifier(nn.Module):
    """Frontend + backbone as one plain module (traceable, exportable): ``wave (B, T) -> logits (B, num_classes)``.

    Args:
        frontend: waveform -> spectrogram module, ``(B, T) -> (B, C, n_mels, frames)``.
        model: the trained classifier; its backbone and input transform (``input_scale``/``input_shift``, set
            for torchvision-style backbones) are taken, the Lightning parts are left out.
    """

    def __init__(self, frontend: nn.Module, model: AudioClassifier):
        super().__init__()
        self.frontend, self.backbone = frontend, model.backbone
        scale, shift = getattr(model, "input_scale", None), getattr(model, "input_shift", None)
        self.scaled = scale is not None
        if self.scaled:
            self.register_buffer("input_scale", scale.detach().clone())
            self.register_buffer("input_shift", shift.detach().clone())

    def backbone_input(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, n_mels, frames) as the backbone sees it (after AudioClassifier's input transform)."""
        return spec * self.input_scale + self.input_shift if self.scaled else spec

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) -> logits (B, num_classes)."""
        return self.backbone(self.backbone_input(self.frontend(wave)))


@dataclass
class LoadedModel:
    """Everything needed to classify audio, rebuilt from one checkpoint.

    Attributes:
        model: the classifier in eval mode, on the CPU.
        frontend: the training frontend, ``wave (B, T) -> spec (B, C, n_mels, frames)``.
        sample_rate: rate in Hz the model expects.
        clip_samples: length in samples of one model input (the training clip).
        class_names: one name per output.
        path: the checkpoint file.
    """

    model: AudioClassifier
    frontend: LogMelFrontend
    sample_rate: int
    clip_samples: int
    class_names: list[str]
    path: Path

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    @property
    def device(self) -> torch.device:
        """Where the frontend (and the model) runs."""
        return next(iter(self.frontend.buffers()), torch.empty(0)).device

    def wave_classifier(self) -> WaveClassifier:
        """The frontend and the backbone as one module, ``wave (B, T) -> logits (B, num_classes)``."""
        return WaveClassifier(self.frontend, self.model).eval()

    def to(self, device: torch.device | str) -> LoadedModel:
        self.model.to(device)
        self.frontend.to(device)
        return self


def _default(name: str):
    """The default of an :class:`AudioDataModule` argument (for checkpoints that did not store it)."""
    return inspect.signature(AudioDataModule.__init__).parameters[name].default


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model and its frontend from a checkpoint written by ``audiocls fit``.

    Pretrained-weight settings of the training run (``pretrained``, ``weights``) are ignored: the weights
    come from the checkpoint, so the weight file used at training time need not exist here.

    Args:
        path: the ``.ckpt`` file.
        map_location: where tensors are loaded.

    Raises:
        ConfigError: the file is missing, unreadable, or not written by ``audiocls fit``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; pass the .ckpt written by 'audiocls fit' (--ckpt_path)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ConfigError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "pass a .ckpt written by 'audiocls fit'"
        ) from err
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    dm = ckpt.get("datamodule_hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "backbone" not in hp or not isinstance(dm, dict) or "state_dict" not in ckpt:
        raise ConfigError(
            f"{path} is not a checkpoint written by 'audiocls fit' (it lacks the model and datamodule "
            "hyperparameters audiocls needs to rebuild the model and its frontend); train with 'audiocls fit' "
            "or pass that run's checkpoints/last.ckpt"
        )
    accepted = inspect.signature(AudioClassifier.__init__).parameters
    kwargs = {k: v for k, v in hp.items() if k in accepted and k not in ("self", "optimizer", "scheduler")}
    kwargs.update(pretrained=False, weights=None)  # the checkpoint holds the weights
    model = AudioClassifier(**kwargs)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing:
        raise ConfigError(f"checkpoint {path} lacks weights of model.backbone={hp['backbone']!r}: {missing[:3]} ...")
    if unexpected:
        log.warning(
            "checkpoint %s has %d tensors the model does not use, e.g. %s", path, len(unexpected), unexpected[0]
        )
    model.eval()

    sample_rate = int(dm.get("sample_rate") or _default("sample_rate"))
    if dm.get("clip_samples"):
        clip_samples = int(dm["clip_samples"])
    else:  # SyntheticDataModule stores clip_seconds=None for "the generated length"
        seconds = dm.get("clip_seconds") or dm.get("seconds") or _default("clip_seconds")
        clip_samples = round(float(seconds) * sample_rate)
    frontend = build_frontend(dm.get("frontend") or {}, sample_rate).eval()
    if frontend.out_channels != hp.get("in_chans", frontend.out_channels):
        raise ConfigError(
            f"checkpoint {path}: the frontend makes {frontend.out_channels} channels but the model expects "
            f"in_chans={hp['in_chans']}"
        )
    return LoadedModel(model, frontend, sample_rate, clip_samples, list(model.class_names), path)


def window_starts(num_samples: int, clip_samples: int, hop_samples: int) -> list[int]:
    """Start samples of the windows covering a recording: every ``hop_samples``, the last one flush with the end.

    A recording no longer than one clip gives one window at 0 (zero-padded by :func:`score_wave`).

    Args:
        num_samples: recording length T.
        clip_samples: window length.
        hop_samples: step between window starts (> 0).
    """
    if hop_samples < 1:
        raise ConfigError(f"hop of {hop_samples} samples must be at least 1 sample")
    if num_samples <= clip_samples:
        return [0]
    last = num_samples - clip_samples
    starts = list(range(0, last + 1, hop_samples))
    if starts[-1] != last:
        starts.append(last)
    return starts


@torch.no_grad()
def score_wave(
    loaded: LoadedModel, wave: np.ndarray, *, hop_seconds: float | None = None, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities of a recording of any length.

    Args:
        loaded: the model from :func:`load_checkpoint`.
        wave: (T,) float32 at ``loaded.sample_rate``.
        hop_seconds: step between windows; ``None`` is half the clip length. A recording up to :data:`SLACK`
            longer than the clip is centre-cropped to one window.
        batch_size: windows per forward pass.

    Returns:
        ``probs (num_classes,)`` the mean of the window probabilities, ``window_probs (W, num_classes)`` and
        ``starts (W,)`` the window start in samples.
    """
    clip = loaded.clip_samples
    hop = clip / 2 if hop_seconds is None else hop_seconds * loaded.sample_rate
    if not math.isfinite(hop) or hop <= 0:
        raise ConfigError(f"--hop_seconds={hop_seconds} must be a positive number of seconds")
    if len(wave) <= clip * (1 + SLACK):  # e.g. ESC-50's 5.001 s clips: one centre crop, as in evaluation
        wave = pad_or_crop(wave, clip)
    starts = window_starts(len(wave), clip, max(1, round(hop)))
    device = loaded.device
    chunks = []
    for i in range(0, len(starts), batch_size):
        batch = np.stack([pad_or_crop(wave[s : s + clip], clip) for s in starts[i : i + batch_size]])
        spec = loaded.frontend(torch.from_numpy(batch).to(device))  # (b, C, n_mels, frames)
        chunks.append(loaded.model(spec).float().softmax(-1).cpu())
    window_probs = torch.cat(chunks).numpy()  # (W, num_classes)
    return window_probs.mean(0), window_probs, np.asarray(starts)
