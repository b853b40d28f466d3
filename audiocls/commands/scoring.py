"""Using a trained model: load a checkpoint with its frontend, and score audio of any length.

A checkpoint written by ``audiocls fit`` holds the model's hyperparameters (backbone, classes, channels) and
the datamodule's (sample rate, clip length, frontend settings), so :func:`load_checkpoint` rebuilds the
whole waveform -> logits path from the file alone, with no dataset at hand. :func:`score_wave` scores a
recording longer than the training clip over sliding windows and averages the probabilities.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audiocls.data.io import pad_or_crop
from audiocls.data.suspicious import audio_facts, suspicious_audio
from audiocls.errors import ConfigError
from audiocls.training.checkpoints import LoadedModel

__all__ = ["shown", "window_starts", "score_wave", "score_waves", "map_windows", "map_waves", "suspicious_input"]

log = logging.getLogger(__name__)

#: a recording at most this fraction longer than the clip is centre-cropped to one window, not slid over
SLACK = 0.05


def shown(text: str | Path) -> str:
    """``text`` (a path, or a line naming one) for people: the bytes of a file name that is not UTF-8, which
    Python holds as lone surrogates, shown as ``\\xe9`` escapes, so a strict UTF-8 stream prints it."""
    return os.fsencode(str(text)).decode("utf-8", "backslashreplace")


def suspicious_input(
    loaded: LoadedModel, path: Path | str, wave: np.ndarray, action: str, *, data: bytes | None = None
) -> str | None:
    """The warning line for ``wave (T,)`` decoded from ``path`` (or from ``data``, its bytes in memory) when it is
    truncated, silent or far shorter than the model's clip (:func:`~audiocls.data.suspicious.suspicious_audio`),
    else ``None``."""
    facts = audio_facts(path, wave, loaded.sample_rate, data=data)
    return suspicious_audio(
        path, facts, reference_seconds=loaded.clip_seconds, reference="the model's clip", action=action
    )


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
    loaded: LoadedModel,
    wave: np.ndarray,
    *,
    hop_seconds: float | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities of a recording of any length.

    Args:
        loaded: the model from :func:`load_checkpoint`.
        wave: (T,) float32 at ``loaded.sample_rate``.
        hop_seconds: step between windows; ``None`` is half the clip length. A recording up to :data:`SLACK`
            longer than the clip is centre-cropped to one window.
        batch_size: windows per forward pass.
        progress: called as ``progress(windows done, windows)`` after each batch.

    Returns:
        ``probs (num_classes,)`` the mean of the window probabilities, ``window_probs (W, num_classes)`` and
        ``starts (W,)`` the window start in samples.
    """
    return score_waves(loaded, [wave], hop_seconds=[hop_seconds], batch_size=batch_size, progress=progress)[0]


@torch.no_grad()
def score_waves(
    loaded: LoadedModel,
    waves: list[np.ndarray],
    *,
    hop_seconds: list[float | None] | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`score_wave` of several recordings at once, their windows sharing forward passes (``audiocls serve``
    batches concurrent requests this way). ``hop_seconds``: one per wave (``None``: all at half a clip)."""

    def probabilities(spec: torch.Tensor) -> torch.Tensor:
        return loaded.model.probabilities(loaded.model(spec).float())  # the task's activation

    return map_waves(loaded, waves, probabilities, hop_seconds=hop_seconds, batch_size=batch_size, progress=progress)


@torch.no_grad()
def map_windows(
    loaded: LoadedModel,
    wave: np.ndarray,
    fn,
    *,
    hop_seconds: float | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``fn`` over the sliding windows of a recording, averaged: the windowing of :func:`score_wave`.

    Args:
        loaded: the model from :func:`load_checkpoint`.
        wave: (T,) float32 at ``loaded.sample_rate``.
        fn: ``spec (b, C, n_mels, frames) -> (b, D)`` on the model's device (class probabilities, embeddings).
        hop_seconds: as for :func:`score_wave`.
        batch_size: windows per forward pass.
        progress: called as ``progress(windows done, windows)`` after each batch.

    Returns:
        ``mean (D,)`` over the windows, ``per_window (W, D)`` and ``starts (W,)`` the window start in samples.
    """
    return map_waves(loaded, [wave], fn, hop_seconds=[hop_seconds], batch_size=batch_size, progress=progress)[0]


def _windows(loaded: LoadedModel, wave: np.ndarray, hop_seconds: float | None) -> tuple[np.ndarray, list[int]]:
    """The wave as windowed (centre-cropped when barely longer than a clip) and its window starts in samples."""
    clip = loaded.clip_samples
    hop = clip / 2 if hop_seconds is None else hop_seconds * loaded.sample_rate
    if not math.isfinite(hop) or hop <= 0:
        raise ConfigError(f"--hop_seconds={hop_seconds} must be a positive number of seconds")
    if len(wave) <= clip * (1 + SLACK):  # e.g. ESC-50's 5.001 s clips: one centre crop, as in evaluation
        wave = pad_or_crop(wave, clip)
    return wave, window_starts(len(wave), clip, max(1, round(hop)))


@torch.no_grad()
def map_waves(
    loaded: LoadedModel,
    waves: list[np.ndarray],
    fn,
    *,
    hop_seconds: list[float | None] | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`map_windows` of several recordings: the windows of all of them in turn, ``batch_size`` per forward
    pass, cut only when their batch is due (a long recording is never held as windows all at once).

    Returns:
        Per wave, ``mean (D,)``, ``per_window (W, D)`` and ``starts (W,)``.
    """
    hops = [None] * len(waves) if hop_seconds is None else hop_seconds
    cut = [_windows(loaded, w, h) for w, h in zip(waves, hops, strict=True)]
    jobs = [(i, s) for i, (_, starts) in enumerate(cut) for s in starts]  # (wave, start) in order
    clip, device = loaded.clip_samples, loaded.device
    chunks = []
    for j in range(0, len(jobs), batch_size):
        batch = np.stack([pad_or_crop(cut[i][0][s : s + clip], clip) for i, s in jobs[j : j + batch_size]])
        spec = loaded.frontend(torch.from_numpy(batch).to(device))  # (b, C, n_mels, frames)
        chunks.append(fn(spec).float().cpu())
        if progress is not None:
            progress(min(j + batch_size, len(jobs)), len(jobs))
    per_window = torch.cat(chunks).numpy()  # (sum of W, D)
    out, at = [], 0
    for _, starts in cut:
        part = per_window[at : at + len(starts)]
        out.append((part.mean(0), part, np.asarray(starts)))
        at += len(starts)
    return out
