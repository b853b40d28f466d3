"""A procedural dataset in the ESC-50 layout, for the demo and the tests.

Ten classes of genuinely different sounds (a steady tone, rising and falling chirps, a band of noise, a
click train, a harmonic stack, amplitude and frequency modulation, a two-tone siren, plucked blips), each
clip with its own random pitch, timing, length, loudness and background noise, so the task needs a model
but is learnable in a few CPU minutes. Generated once, deterministically from the seed, into the cache.

``max_sources > 1`` makes it polyphonic: every clip mixes 1..max_sources different classes, each event at its
own time and level, and is labelled with all of them (``task: multilabel``, multi-hot targets).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from audiocls.data.cache import default_cache_dir
from audiocls.data.clips import Clip
from audiocls.data.esc50 import COLUMNS, ESC50DataModule
from audiocls.errors import ConfigError, DataError
from audiocls.files import atomic_folder

__all__ = ["SyntheticDataModule", "generate_synthetic", "CLASSES"]

NUM_FOLDS = 5


def _env(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A short attack/release envelope of ``n`` samples."""
    a = max(1, int(sr * rng.uniform(0.005, 0.03)))
    env = np.ones(n)
    env[:a] = np.linspace(0, 1, a)
    env[-a:] = np.linspace(1, 0, a)
    return env


def _tone(n, sr, rng):
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * rng.uniform(300, 1200) * t)


def _chirp(up: bool):
    def make(n, sr, rng):
        lo, hi = rng.uniform(200, 600), rng.uniform(1500, 4000)
        f0, f1 = (lo, hi) if up else (hi, lo)
        f = f0 * (f1 / f0) ** (np.arange(n) / n)
        return np.sin(2 * np.pi * np.cumsum(f) / sr)

    return make


def _noise_band(n, sr, rng):
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    centre = rng.uniform(1000, min(4000, sr / 2 * 0.8))
    spec[np.abs(freqs - centre) > centre * 0.15] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9)


def _clicks(n, sr, rng):
    x = np.zeros(n)
    period = int(sr / rng.uniform(6, 16))
    start = int(rng.integers(0, period))
    for i in range(start, n, period):
        k = min(n - i, int(sr * 0.002))
        x[i : i + k] = np.hanning(2 * k)[k:] * rng.choice([-1, 1])
    return x


def _harmonic(n, sr, rng):
    t = np.arange(n) / sr
    f0 = rng.uniform(100, 300)
    return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(rng.integers(6, 11))) if k * f0 < sr / 2)


def _am(n, sr, rng):
    t = np.arange(n) / sr
    mod = 1 - rng.uniform(0.8, 1.0) * (0.5 + 0.5 * np.cos(2 * np.pi * rng.uniform(4, 12) * t))
    return mod * np.sin(2 * np.pi * rng.uniform(500, 2000) * t)


def _fm(n, sr, rng):
    t = np.arange(n) / sr
    f = rng.uniform(500, 2000) + rng.uniform(80, 250) * np.sin(2 * np.pi * rng.uniform(3, 8) * t)
    return np.sin(2 * np.pi * np.cumsum(f) / sr)


def _siren(n, sr, rng):
    f_lo = rng.uniform(400, 900)
    seg = int(sr * rng.uniform(0.1, 0.3))
    f = np.where((np.arange(n) // seg) % 2 == 0, f_lo, f_lo * 1.5)
    return np.sin(2 * np.pi * np.cumsum(f) / sr)


def _pluck(n, sr, rng):
    x = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        i = int(rng.integers(0, max(1, n - sr // 10)))
        k = min(n - i, int(sr * 0.15))
        tk = np.arange(k) / sr
        x[i : i + k] += np.sin(2 * np.pi * rng.uniform(600, 2500) * tk) * np.exp(-tk * 40)
    return x


CLASSES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "tone": _tone,
    "chirp_up": _chirp(True),
    "chirp_down": _chirp(False),
    "noise_band": _noise_band,
    "clicks": _clicks,
    "harmonic": _harmonic,
    "am_tone": _am,
    "fm_tone": _fm,
    "siren": _siren,
    "pluck": _pluck,
}


def synth_clip(label: int, sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip (T,) float32 of class ``label``: the event at a random time and length, over noise."""
    total = round(sr * seconds)
    n = int(total * rng.uniform(0.35, 0.8))
    event = list(CLASSES.values())[label](n, sr, rng) * _env(n, sr, rng)
    event = event / (np.abs(event).max() + 1e-9)
    start = int(rng.integers(0, total - n + 1))
    x = np.zeros(total)
    x[start : start + n] = event
    snr_db = rng.uniform(6, 24)
    x += rng.standard_normal(total) * 10 ** (-snr_db / 20) * 0.3
    x *= 10 ** (rng.uniform(-24, -3) / 20) / (np.abs(x).max() + 1e-9)
    return x.astype(np.float32)


def synth_mixture(labels: list[int], sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One polyphonic clip (T,) float32: an event of each class in ``labels`` (own time, length, level) over noise."""
    total = round(sr * seconds)
    x = np.zeros(total)
    for label in labels:
        n = int(total * rng.uniform(0.3, 0.7))
        event = list(CLASSES.values())[label](n, sr, rng) * _env(n, sr, rng)
        start = int(rng.integers(0, total - n + 1))
        x[start : start + n] += event / (np.abs(event).max() + 1e-9) * 10 ** (rng.uniform(-9, 0) / 20)
    x /= np.abs(x).max() + 1e-9
    x += rng.standard_normal(total) * 10 ** (-rng.uniform(6, 24) / 20) * 0.3
    x *= 10 ** (rng.uniform(-24, -3) / 20) / (np.abs(x).max() + 1e-9)
    return x.astype(np.float32)


#: the extra metadata column of a polyphonic set: every class id of the clip, ``;``-separated
LABELS_COLUMN = "labels"


def generate_synthetic(
    root: str | Path,
    *,
    num_classes: int = 10,
    clips_per_fold: int = 8,
    sample_rate: int = 16000,
    seconds: float = 2.0,
    seed: int = 0,
    max_sources: int = 1,
) -> Path:
    """Write the dataset under ``root`` (``audio/*.wav`` + ``meta/esc50.csv``) unless it is there already.

    Args:
        root: target folder; written atomically (temporary folder, then rename).
        num_classes: how many of :data:`CLASSES` to use, in order.
        clips_per_fold: clips of every class in each of the 5 folds.
        sample_rate: rate of the WAV files in Hz.
        seconds: clip length.
        seed: the whole dataset is a function of this seed and the other arguments.
        max_sources: 1 writes one event per clip; more mixes 1..max_sources distinct classes per clip (the
            ``target`` column holds the first, cycling over the classes as in the single-label set; the extra
            ``labels`` column all of them).

    Returns:
        ``root``.
    """
    root = Path(root)
    if (root / "meta" / "esc50.csv").is_file():
        return root
    if not 2 <= num_classes <= len(CLASSES):
        raise ConfigError(f"num_classes={num_classes} must lie in 2..{len(CLASSES)}")
    if not 1 <= max_sources <= num_classes:
        raise ConfigError(f"max_sources={max_sources} must lie in 1..num_classes={num_classes}")
    # written meanwhile by another process: theirs is kept
    with atomic_folder(root, (root / "meta" / "esc50.csv").is_file) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "meta").mkdir()
        rng = np.random.default_rng(seed)
        names = list(CLASSES)[:num_classes]
        rows = []
        for fold in range(1, NUM_FOLDS + 1):
            for label, name in enumerate(names):
                for take in range(clips_per_fold):
                    src = 100000 + (fold * num_classes + label) * clips_per_fold + take
                    fname = f"{fold}-{src}-A-{label}.wav"
                    if max_sources > 1:
                        others = [c for c in range(num_classes) if c != label]
                        extra = rng.choice(others, int(rng.integers(0, max_sources)), replace=False).tolist()
                        labels = [label, *sorted(extra)]
                        wave = synth_mixture(labels, sample_rate, seconds, rng)
                    else:
                        labels, wave = [label], synth_clip(label, sample_rate, seconds, rng)
                    sf.write(tmp / "audio" / fname, wave, sample_rate, subtype="PCM_16")
                    row = [fname, fold, label, name, "True", src, "A"]
                    rows.append(row + [";".join(map(str, labels))] if max_sources > 1 else row)
        with (tmp / "meta" / "esc50.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*COLUMNS, LABELS_COLUMN] if max_sources > 1 else COLUMNS)
            writer.writerows(rows)
    return root


class SyntheticDataModule(ESC50DataModule):
    """The procedural set, generated by :meth:`prepare_data` (once, on one process), loaded exactly as ESC-50.

    Args:
        root: where to generate; ``None`` is a folder of the cache named by the generation settings.
        num_classes: number of sound classes (2..10).
        clips_per_fold: clips of every class per fold.
        seconds: length of the generated clips.
        gen_seed: seed of the generator.
        sample_rate: rate of the generated files and of the model input, in Hz.
        max_sources: 1 for one sound per clip (``multiclass``); more makes every clip a mixture of
            1..max_sources classes labelled with all of them (``task`` becomes ``multilabel``).
        clip_seconds: model input length; ``None`` is ``seconds``.
        **kwargs: see :class:`~audiocls.data.base.AudioDataModule`.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        num_classes: int = 10,
        clips_per_fold: int = 8,
        seconds: float = 2.0,
        gen_seed: int = 0,
        sample_rate: int = 16000,
        max_sources: int = 1,
        clip_seconds: float | None = None,
        **kwargs,
    ):
        if not 2 <= num_classes <= len(CLASSES):
            raise ConfigError(f"data.num_classes={num_classes} must lie in 2..{len(CLASSES)}")
        sr = int(sample_rate)
        if not 1 <= max_sources <= num_classes:
            raise ConfigError(f"data.max_sources={max_sources} must lie in 1..data.num_classes={num_classes}")
        settings = f"{num_classes}-{clips_per_fold}-{sr}-{seconds}-{gen_seed}"
        settings += f"-poly{max_sources}" if max_sources > 1 else ""  # the single-label folders keep their names
        if root is None:
            tag = hashlib.sha1(settings.encode()).hexdigest()[:10]
            root = Path(kwargs.get("cache_dir") or default_cache_dir()) / f"synthetic-{tag}"
        self._generate = dict(
            num_classes=num_classes,
            clips_per_fold=clips_per_fold,
            sample_rate=sr,
            seconds=seconds,
            seed=gen_seed,
            max_sources=max_sources,
        )
        self.task = "multilabel" if max_sources > 1 else "multiclass"
        # the classes are known without the files (read_class_names): nothing is read here, prepare_data writes
        super().__init__(root, sample_rate=sr, clip_seconds=clip_seconds or seconds, **kwargs)
        self.root.mkdir(
            parents=True, exist_ok=True
        )  # an empty folder (the files come in prepare_data): data.root exists

    def read_class_names(self) -> list[str]:
        return list(CLASSES)[: self._generate["num_classes"]]

    def prepare_data(self) -> None:
        """Write the set under ``root`` unless it is there (Lightning calls this on one process per node)."""
        generate_synthetic(self.root, **self._generate)
        super().prepare_data()

    def rows(self) -> list[dict[str, str]]:
        if self._rows is None and not (self.root / "meta" / "esc50.csv").is_file():
            raise DataError(f"the synthetic set is not generated under {self.root} yet: call prepare_data() first")
        return super().rows()

    def list_clips(self) -> list[Clip]:
        clips = super().list_clips()
        if self.task != "multilabel":
            return clips
        rows = self.rows()
        missing = [r["filename"] for r in rows if not (r.get(LABELS_COLUMN) or "").strip()]
        if missing:
            raise DataError(
                f"{self.root / 'meta' / 'esc50.csv'} has no {LABELS_COLUMN} column value for {missing[:3]}: "
                "it was generated single-label; delete the folder to regenerate it"
            )
        # the generator's class ids are 0..num_classes-1 in order, as are the labels ESC50DataModule maps them to
        return [
            replace(c, labels=tuple(int(v) for v in r[LABELS_COLUMN].split(";")))
            for c, r in zip(clips, rows, strict=True)
        ]
