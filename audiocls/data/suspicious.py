"""Suspicious audio: files that decode but are probably not what the user meant (cut short, truncated, silent).

One check for every place that decodes audio: ``audiocls predict`` and ``explain`` compare a file with the
model's clip length, the datamodules' ``setup`` and ``audiocls data verify`` with the dataset's median length.
The work goes on: each suspicious file gets one warning line naming it, what is wrong and what that means;
past :data:`SHOWN` files the rest are only counted (:class:`WarningSummary`).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "SILENT_PEAK", "SHORT_FRACTION", "AudioFacts", "audio_facts", "truncation", "suspicious_audio", "dataset_warnings",
    "WarningSummary",
]  # fmt: skip

#: a clip whose largest sample is below this (-80 dBFS, about three steps of 16-bit audio) is called silent
SILENT_PEAK = 1e-4
#: a clip shorter than this share of the reference length (the model's clip, the dataset's median) is called short.
#: A quarter, not a half: FSDD's spoken digits have a median of 0.42 s in a 1 s clip, and a half would flag them all.
SHORT_FRACTION = 0.25
#: warning lines shown before the rest are only counted
SHOWN = 10
#: data-chunk sizes that mean "length unknown" (a WAV written to a pipe), not a truncation
_STREAMED = 0x7FFFF000
#: libsndfile's parse log of a file whose audio chunk is longer than the file: ``data : 32000 (should be 10637)``
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclass(frozen=True)
class AudioFacts:
    """What the checks need to know about one decoded file.

    Attributes:
        seconds: decoded length.
        peak: largest absolute sample.
        truncated: what the header promised against what the file holds (:func:`truncation`), or ``None``.
    """

    seconds: float
    peak: float
    truncated: str | None = None


def truncation(path: str | Path, *, data: bytes | None = None) -> str | None:
    """``"the header promises N bytes of audio, the file holds M (p %)"`` for a cut-off WAV/AIFF, else ``None``.

    ``data``: the file's bytes, when it is held in memory (an upload); ``path`` then only names it.

    libsndfile decodes what is there and records the mismatch in its parse log (``SoundFile.extra_info``); FLAC and
    OGG files cut short fail to decode instead, which :func:`~audiocls.data.io.load_audio` reports.
    """
    try:
        # bytes: any name the file system allows
        text = sf.info(os.fsencode(path) if data is None else io.BytesIO(data)).extra_info
    except Exception:  # unreadable: load_audio has said so already
        return None
    m = _SHORT_CHUNK.search(text)
    if m is None:
        return None
    promised, held = int(m.group(1)), int(m.group(2))
    if held >= promised or promised >= _STREAMED:
        return None
    return f"the header promises {promised} bytes of audio, the file holds {held} ({held / promised:.0%})"


def audio_facts(path: str | Path, wave: np.ndarray, sample_rate: int, *, data: bytes | None = None) -> AudioFacts:
    """:class:`AudioFacts` of ``wave (T,)`` decoded from ``path`` (or from ``data``, its bytes) at ``sample_rate``."""
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    return AudioFacts(len(wave) / sample_rate, peak, truncation(path, data=data))


def suspicious_audio(
    path: str | Path, facts: AudioFacts, *, reference_seconds: float, reference: str, action: str
) -> str | None:
    """One warning line for a suspicious file, or ``None`` for a normal one.

    Args:
        path: the file, named in the line.
        facts: from :func:`audio_facts` (or the decoded cache).
        reference_seconds: the length a normal file has: the model's clip, the dataset's median.
        reference: what that length is, for the line (``"the model's clip"``, ``"the median of ESC50DataModule"``).
        action: what is done with the file all the same (``"scored anyway"``, ``"kept for training"``).

    Returns:
        ``"a.wav: 0.010 s long, under 25% of the model's clip (5.00 s): scored anyway; ..."``.
    """
    what, meaning = [], []
    if facts.truncated:
        what.append(f"truncated ({facts.truncated})")
        meaning.append("the end of the recording is missing (an interrupted copy or download?)")
    if facts.seconds < SHORT_FRACTION * reference_seconds:
        what.append(
            f"{facts.seconds:.3f} s long, under {SHORT_FRACTION:.0%} of {reference} ({reference_seconds:.2f} s)"
        )
        meaning.append(f"a {facts.seconds:.3f} s clip is mostly zero padding")
    if facts.peak < SILENT_PEAK:
        what.append(f"silent (peak {facts.peak:.1e}, below {SILENT_PEAK:g})")
        meaning.append("a silent clip carries no sound to classify")
    if not what:
        return None
    return f"{path}: {'; '.join(what)}: {action}; {'; '.join(meaning)}"


def dataset_warnings(files: Sequence[tuple[str | Path, AudioFacts]], dataset: str, action: str) -> list[str]:
    """:func:`suspicious_audio` of every file of a dataset against the dataset's median length (the lines, in order).

    Args:
        files: ``(path, facts)`` of every decoded file.
        dataset: its name, for the lines.
        action: what is done with the files all the same.
    """
    if not files:
        return []
    median = float(np.median([f.seconds for _, f in files]))
    reference = f"the median clip of {dataset}"
    lines = (suspicious_audio(p, f, reference_seconds=median, reference=reference, action=action) for p, f in files)
    return [line for line in lines if line]


class WarningSummary:
    """Emits the first ``shown`` warning lines, counts the rest, and says how many there were at :meth:`close`.

    Args:
        emit: where a line goes, e.g. ``log.warning`` or ``print``.
        shown: lines emitted in full.
    """

    def __init__(self, emit: Callable[[str], object], shown: int = SHOWN):
        self.emit, self.shown, self.lines = emit, shown, []

    def add(self, line: str | None) -> None:
        """Emit ``line`` (one file), or count it once ``shown`` lines are out; ``None`` (a normal file) is ignored."""
        if line is None:
            return
        self.lines.append(line)
        if len(self.lines) <= self.shown:
            self.emit(line)

    def close(self) -> None:
        """The count line, when some lines were held back."""
        if len(self.lines) > self.shown:
            self.emit(f"... and {len(self.lines) - self.shown} more suspicious files ({len(self.lines)} in all)")
