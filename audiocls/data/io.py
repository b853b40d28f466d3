"""Decoding one file and shaping one wave: :func:`load_audio` (soundfile, downmix to mono, resample; its
:func:`decode_audio` twin for bytes in memory),
:func:`pad_or_crop` and :func:`sliding_windows`.

Every dataset file is decoded here once, by the decoded-audio cache (:mod:`audiocls.data.cache`); clips and
the dataset over that cache are in :mod:`audiocls.data.clips`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiocls.errors import AudioLoadError, AudioTooLongError

__all__ = [
    "AUDIO_EXTENSIONS", "decode_audio", "decoded_samples", "load_audio", "pad_or_crop", "resample", "sliding_windows",
]  # fmt: skip

log = logging.getLogger(__name__)

#: the largest resampling kernel (numbers) torchaudio is asked to build; :func:`resample` says why
MAX_KERNEL = 1 << 22
#: :func:`decode_audio` with a ``max_seconds`` refuses what decodes to more samples than this many channels at this
#: rate would in that time
MAX_RATE, MAX_CHANNELS = 48_000, 2

_MP3 = "MP3" in sf.available_formats() or "MPEG" in sf.available_formats()
#: file endings searched for audio (class folders, ``audiocls predict`` folders): what libsndfile decodes here
#: (MP3 needs libsndfile >= 1.1)
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".snd",
    ".w64",
    ".caf",
) + ((".mp3",) if _MP3 else ())


def _source(path: Path) -> str | bytes:
    # bytes as the file system holds them: soundfile encodes a str path strictly, so a name that is not
    # UTF-8 (a lone surrogate in Python) would fail to open
    return str(path) if sys.platform == "win32" else os.fsencode(path)


def decoded_samples(path: str | Path, sample_rate: int) -> int:
    """Samples :func:`load_audio` will return for ``path`` at ``sample_rate``, from the header alone (no decode);
    0 for a file whose header cannot be read (it will be recorded as a bad file)."""
    try:
        info = sf.info(_source(Path(path)))
    except Exception:  # the decode reports it, naming the file
        return 0
    return math.ceil(max(info.frames, 0) * sample_rate / info.samplerate) if info.samplerate > 0 else 0


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode one file to a mono float32 wave at ``sample_rate``.

    Integer files (8-bit unsigned, 16/24/32-bit) are scaled to [-1, 1]; float files are kept as they are.

    Args:
        path: any file soundfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1, AU, ...).
        sample_rate: target rate in Hz; the file is resampled with torchaudio when it differs.

    Returns:
        wave (T,) float32.

    Raises:
        AudioLoadError: the file is missing, unreadable, empty or not finite; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"audio file {path} does not exist")
    return _decode(_source(path), f"audio file {path}", sample_rate)


def decode_audio(
    data: bytes, sample_rate: int, *, name: str = "upload", max_seconds: float | None = None
) -> np.ndarray:
    """:func:`load_audio` of a file's bytes held in memory (an HTTP upload): the same decode, downmix and resample.

    Args:
        data: the whole file (WAV, FLAC, OGG, MP3, ... as soundfile reads them).
        sample_rate: target rate in Hz.
        name: what the messages call the audio.
        max_seconds: refuse audio longer than this, read from the header before anything is decoded.

    Returns:
        wave (T,) float32.

    Raises:
        AudioLoadError: empty, undecodable, silent of samples or not finite; the message names the problem.
        AudioTooLongError: longer than ``max_seconds``.
    """
    if not data:
        raise AudioLoadError(f"{name} is empty (0 bytes); send the audio file's bytes")
    if max_seconds is not None:
        try:
            info = sf.info(io.BytesIO(data))
        except Exception as err:
            raise AudioLoadError(f"cannot decode {name}: {_why(err)}") from err
        seconds = info.frames / info.samplerate if info.samplerate else 0.0
        if seconds > max_seconds:
            raise AudioTooLongError(
                f"{name} is {seconds:.1f} s long, over the limit of {max_seconds:g} s; send a shorter recording "
                "or raise the server's --max_seconds"
            )
        # a few compressed bytes can hold hours of many channels: bound what decoding would allocate
        limit = max_seconds * MAX_RATE * MAX_CHANNELS * 4
        if info.frames * info.channels * 4 > limit:
            raise AudioTooLongError(
                f"{name} decodes to {info.frames * info.channels * 4 / 1e6:.0f} MB of samples ({info.channels} "
                f"channels at {info.samplerate} Hz), over the {limit / 1e6:.0f} MB that {max_seconds:g} s of "
                f"{MAX_CHANNELS} channels at {MAX_RATE} Hz take; send fewer channels or a lower rate"
            )
    return _decode(io.BytesIO(data), name, sample_rate)


def _decode(source, name: str, sample_rate: int) -> np.ndarray:
    """Decode ``source`` (a path as bytes or str, or a file object) as :func:`load_audio` documents."""
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ... on bad input
        raise AudioLoadError(f"cannot decode {name}: {_why(err)}") from err
    if data.size == 0:
        raise AudioLoadError(f"{name} holds no samples")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"{name} holds NaN or infinite samples")
    with np.errstate(over="ignore"):  # a float file near float32's limit: refused below, by name
        # the channels are summed in float64: two samples of 3e38 overflow a float32 sum
        wave = data.mean(axis=1, dtype=np.float64).astype(np.float32) if data.shape[1] > 1 else data[:, 0]
        if sr != sample_rate:
            wave = resample(wave, sr, sample_rate)
    if not np.isfinite(wave).all():
        raise AudioLoadError(
            f"{name} holds samples up to {np.abs(data).max():.3g}, which overflow float32 once downmixed "
            "or resampled; a float file should hold samples within [-1, 1]: rescale it, or delete it"
        )
    return np.ascontiguousarray(wave, dtype=np.float32)


def _why(err: Exception) -> str:
    """soundfile's message without ``Error opening <_io.BytesIO object at 0x...>:``, which says nothing to a person."""
    return re.sub(r"^Error opening <[^>]*>: ", "", str(err))


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """``wave (T,)`` at ``orig`` Hz as ``(ceil(T * new / orig),)`` float32 at ``new`` Hz.

    torchaudio's windowed-sinc resampler for every usual pair of rates. Its kernel grows with the product of the
    reduced rates, so for a pair with a small common divisor (44056 Hz, 11127 Hz, 47999 Hz against 22050 Hz) the
    wave is resampled in the frequency domain instead (an ideal low-pass; the same length), in time linear in the
    clip rather than a minute and a gigabyte per file.
    """
    g = math.gcd(orig, new)
    if (orig // g) * (new // g) <= MAX_KERNEL:
        return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig, new).numpy()
    n, m = len(wave), math.ceil(len(wave) * new / orig)
    spectrum = np.fft.rfft(wave.astype(np.float64))
    out = np.zeros(m // 2 + 1, dtype=np.complex128)
    keep = min(len(spectrum), len(out))
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, m) * (m / n)).astype(np.float32)


def pad_or_crop(wave: np.ndarray, length: int, *, offset: int | None = None) -> np.ndarray:
    """Zero-pad (at the end, never looped) or crop ``wave (T,)`` to ``length`` samples.

    Args:
        wave: (T,) float32.
        length: output length in samples.
        offset: crop start when ``T > length``; ``None`` takes the centre crop.

    Returns:
        (length,) float32.
    """
    n = wave.shape[0]
    if n == length:
        return wave
    if n < length:
        out = np.zeros(length, dtype=np.float32)
        out[:n] = wave
        return out
    start = (n - length) // 2 if offset is None else int(min(max(offset, 0), n - length))
    return wave[start : start + length]


def sliding_windows(wave: np.ndarray, total: int, window: int, hop: int) -> np.ndarray:
    """Pad or centre-crop ``wave (T,)`` to ``total`` samples and cut it into overlapping windows.

    Args:
        wave: (T,) float32.
        total: length evaluated, in samples (e.g. GTZAN's 30 s).
        window: samples per window (the training clip length).
        hop: samples between window starts.

    Returns:
        (W, window) float32 with ``W = 1 + (total - window) // hop``, the same for every clip.
    """
    wave = pad_or_crop(wave, total)
    count = 1 + (total - window) // hop
    return np.stack([wave[i * hop : i * hop + window] for i in range(count)])
