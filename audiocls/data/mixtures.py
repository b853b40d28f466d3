"""Mixtures of a single-label dataset: overlay 1..N clips at random SNRs, a real-audio multi-label benchmark.

    audiocls fit --config configs/esc10_mixtures.yaml --data.fold 1

ESC-10 has one sound per clip; a mixture of 1-3 of its clips (distinct classes, each extra source at a random
level relative to the first) labelled with all of them is a multi-label task on real recordings, scored by mAP.
The mixtures are planned from a seed and written once into the cache folder (``mixtures-<hash>/``, the hash
covering the source files and every mixing setting), so every run and every fold sees the same files.

No leaks, by construction:

* a mixture only overlays clips of one official fold, so fold ``k``'s test mixtures hold fold ``k``'s clips only;
* within each fold, whole source recordings (ESC-50's ``src_file``) are set aside for validation mixtures
  (``val_fraction`` of them); validation mixtures overlay only those, training mixtures only the others.

With ``data.fold: k`` the test split is every mixture of fold ``k``, validation the validation mixtures of the
other folds and training their training mixtures, whichever fold is held out.

Why a datamodule and not an ``audiocls data mix`` command writing a manifest: the mixing settings are then
hyperparameters stored in every checkpoint, ``audiocls cv`` schedules the official folds as for ESC-10, and there
is no second copy of the dataset whose folds could drift from the sources'.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiocls.data.cache import DecodedCache, default_cache_dir
from audiocls.data.clips import Clip
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.io import pad_or_crop
from audiocls.errors import ConfigError, DataError
from audiocls.files import atomic_folder, hash_files

__all__ = ["plan_mixtures", "mix_waves", "build_mixtures", "ESC50MixturesDataModule", "MIX_VERSION"]

log = logging.getLogger(__name__)

#: bump when the mixing changes, so old mixture folders are not reused
MIX_VERSION = "m1"
#: the loudest a mixture may peak (it is scaled down, whole, when the sum would clip)
PEAK = 0.99
#: each source clip is cut or padded to the clip length; a source quieter than this RMS is left at its level
SILENT_RMS = 1e-6


def plan_mixtures(
    sources: Sequence[Clip],
    *,
    per_fold: int | None,
    max_sources: int,
    snr_db: tuple[float, float],
    val_fraction: float,
    seed: int,
) -> list[dict]:
    """Which clips each mixture overlays, at which levels: a pure function of the clip list and the settings.

    Args:
        sources: single-label clips with official folds; a clip's ``group`` (its source recording) stays in one pool.
        per_fold: mixtures of each fold; ``None`` is as many as the fold has clips.
        max_sources: each mixture overlays ``1..max_sources`` clips of distinct classes (uniformly many).
        snr_db: range of the level of the first source over each further one, in dB (uniform).
        val_fraction: share of each fold's source recordings whose clips only make validation mixtures.
        seed: the plan of fold ``k`` is drawn from ``(seed, k)`` alone.

    Returns:
        One dict per mixture, in fold order: ``fold``, ``pool`` (``train``/``val``), ``sources`` (indices into
        ``sources``, the first one the reference), ``gains_db`` (level change of each source; 0 for the first).
    """
    plan = []
    for fold in sorted({c.fold for c in sources}):
        members = sorted((i for i, c in enumerate(sources) if c.fold == fold), key=lambda i: str(sources[i].path))
        rng = np.random.default_rng([seed, fold])
        groups = sorted({sources[i].group or str(sources[i].path) for i in members})
        n_val = round(len(groups) * val_fraction)
        val_groups = {groups[j] for j in rng.permutation(len(groups))[:n_val]}
        total = len(members) if per_fold is None else per_fold
        pools = {
            name: [i for i in members if ((sources[i].group or str(sources[i].path)) in val_groups) == (name == "val")]
            for name in ("train", "val")
        }
        for name, pool in pools.items():
            count = round(total * len(pool) / len(members))
            by_class: dict[int, list[int]] = {}
            for i in pool:
                by_class.setdefault(sources[i].label, []).append(i)
            classes = sorted(by_class)
            for _ in range(count if classes else 0):
                n = min(int(rng.integers(1, max_sources + 1)), len(classes))
                chosen = rng.choice(classes, size=n, replace=False)
                picked = [int(by_class[int(c)][rng.integers(len(by_class[int(c)]))]) for c in chosen]
                gains = [0.0] + [-float(rng.uniform(*snr_db)) for _ in picked[1:]]
                plan.append({"fold": fold, "pool": name, "sources": picked, "gains_db": gains})
    return plan


def mix_waves(waves: Sequence[np.ndarray], gains_db: Sequence[float], length: int) -> np.ndarray:
    """Overlay ``waves`` (each (T_i,), cut or zero-padded to ``length``), source ``j`` at ``gains_db[j]`` dB relative
    to the RMS of the first; scaled down whole when it would peak above :data:`PEAK`. Returns (length,) float32."""
    fixed = [pad_or_crop(np.asarray(w, dtype=np.float32), length).astype(np.float64) for w in waves]
    ref = float(np.sqrt(np.mean(fixed[0] ** 2)))
    mix = fixed[0].copy()
    for wave, gain in zip(fixed[1:], gains_db[1:], strict=True):
        rms = float(np.sqrt(np.mean(wave**2)))
        scale = ref * 10 ** (gain / 20) / rms if rms > SILENT_RMS and ref > SILENT_RMS else 1.0
        mix += scale * wave
    peak = float(np.abs(mix).max()) if len(mix) else 0.0
    if peak > PEAK:
        mix *= PEAK / peak
    return mix.astype(np.float32)


def _hash(sources: Sequence[Clip], sample_rate: int, length: int, settings: dict) -> str:
    h = hashlib.sha1(
        json.dumps({"v": MIX_VERSION, "sr": sample_rate, "n": length, **settings}, sort_keys=True).encode()
    )
    hash_files(h, [c.path for c in sources], [f"{c.label}:{c.fold}:{c.group}" for c in sources])
    return h.hexdigest()[:16]


def build_mixtures(
    sources: Sequence[Clip],
    plan: list[dict],
    *,
    sample_rate: int,
    length: int,
    out: Path,
    cache_dir: str | Path | None = None,
) -> Path:
    """Write the mixtures of ``plan`` as 16-bit WAV files ``out/audio/<fold>-<pool>-<n>.wav`` with ``out/mixtures.csv``
    (file, fold, pool, labels, sources, gains); a no-op when ``out`` is complete. Written into a temporary folder
    and renamed, so a killed build never leaves a folder that looks complete. Sources are decoded through the
    decoded-audio cache (shared with runs on the plain dataset)."""
    import soundfile as sf

    if (out / "mixtures.csv").is_file():
        return out
    decoded = DecodedCache([c.path for c in sources], sample_rate, cache_dir)
    bad = decoded.bad
    if bad:
        first = next(iter(bad.values()))
        raise DataError(f"{len(bad)} source clips of the mixtures cannot be decoded, e.g. {first}; fix or delete them")
    log.info("writing %d mixtures at %d Hz into %s", len(plan), sample_rate, out)
    # another process may finish first: then theirs is kept
    with atomic_folder(out, (out / "mixtures.csv").is_file) as tmp:
        (tmp / "audio").mkdir()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["filename", "fold", "pool", "labels", "sources", "gains_db"])
        for n, m in enumerate(plan):
            name = f"{m['fold']}-{m['pool']}-{n:05d}.wav"
            wave = mix_waves([decoded[i] for i in m["sources"]], m["gains_db"], length)
            sf.write(tmp / "audio" / name, wave, sample_rate, subtype="PCM_16")
            labels = ";".join(str(sources[i].label) for i in m["sources"])
            files = ";".join(Path(sources[i].path).name for i in m["sources"])
            w.writerow([name, m["fold"], m["pool"], labels, files, ";".join(f"{g:.3f}" for g in m["gains_db"])])
        (tmp / "mixtures.csv").write_text(buf.getvalue())
    return out


class ESC50MixturesDataModule(ESC50DataModule):
    """ESC-50 / ESC-10 mixtures: 1..``max_sources`` clips of one fold overlaid at random SNRs, multi-label.

    See the module docstring for the leak rules. ``val_fraction`` is the share of every fold's source recordings
    kept for validation mixtures; ``val_fold`` (a whole fold for validation) also works.

    Args:
        root: the ESC-50 release folder (``audio/``, ``meta/esc50.csv``).
        esc10: mix the ESC-10 subset (10 classes) or all 50 classes.
        mixtures_per_fold: mixtures made of each fold; ``None`` is as many as the fold has clips.
        max_sources: clips per mixture, 1..this many (uniform), of distinct classes; at least 2.
        snr_db: ``[low, high]``: the first source is this many dB (uniform) above each further one.
        mix_seed: the mixtures are a function of this seed, the source files and the settings.
        **kwargs: see :class:`~audiocls.data.esc50.ESC50DataModule`.
    """

    task = "multilabel"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        esc10: bool = True,
        mixtures_per_fold: int | None = None,
        max_sources: int = 3,
        snr_db: tuple[float, float] = (-5.0, 5.0),
        mix_seed: int = 0,
        **kwargs,
    ):
        super().__init__(root, esc10=esc10, **kwargs)
        if max_sources < 2:
            raise ConfigError(f"data.max_sources={max_sources} must be at least 2 (1 is the plain dataset)")
        if mixtures_per_fold is not None and mixtures_per_fold < 1:
            raise ConfigError(f"data.mixtures_per_fold={mixtures_per_fold} must be at least 1, or null")
        snr = tuple(float(v) for v in snr_db)
        if len(snr) != 2 or snr[0] > snr[1]:
            raise ConfigError(f"data.snr_db={list(snr_db)} must be [low, high] with low <= high")
        self.mixtures_per_fold, self.max_sources, self.snr_db = mixtures_per_fold, max_sources, snr
        self.mix_seed = mix_seed
        self._mixtures: list[Clip] | None = None

    def source_clips(self) -> list[Clip]:
        """The single-label clips the mixtures are made of."""
        return super().list_clips()

    def mixtures_dir(self, sources: Sequence[Clip] | None = None) -> Path:
        """``<cache>/mixtures-<hash>``: where the mixtures of these settings are (or will be) written."""
        key = _hash(sources or self.source_clips(), self.sample_rate, self.clip_samples, self._settings())
        return Path(self.cache_dir or default_cache_dir()) / f"mixtures-{key}"

    def _settings(self) -> dict:
        return {
            "per_fold": self.mixtures_per_fold, "max_sources": self.max_sources, "snr_db": list(self.snr_db),
            "val_fraction": self.val_fraction, "seed": self.mix_seed,
        }  # fmt: skip

    def list_clips(self) -> list[Clip]:
        if self._mixtures is not None:
            return self._mixtures
        sources = self.source_clips()
        out = self.mixtures_dir(sources)
        if not (out / "mixtures.csv").is_file():
            plan = plan_mixtures(
                sources, per_fold=self.mixtures_per_fold, max_sources=self.max_sources, snr_db=self.snr_db,
                val_fraction=self.val_fraction, seed=self.mix_seed,
            )  # fmt: skip
            build_mixtures(
                sources, plan, sample_rate=self.sample_rate, length=self.clip_samples, out=out, cache_dir=self.cache_dir
            )
        with (out / "mixtures.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        clips = []
        for r in rows:
            labels = tuple(int(v) for v in r["labels"].split(";"))
            fold = int(r["fold"])
            clips.append(Clip(out / "audio" / r["filename"], labels[0], fold, f"{r['pool']}/{fold}", labels))
        self._mixtures = clips
        return clips

    def split(self, clips: Sequence[Clip]) -> dict[str, list[int]]:
        """``test``: fold ``k``'s mixtures; ``val``: the other folds' validation mixtures (or ``val_fold``'s)."""
        if self.val_fold is not None:
            return super().split(clips)
        test = [i for i, c in enumerate(clips) if c.fold == self.fold]
        rest = [i for i, c in enumerate(clips) if c.fold != self.fold]
        val = [i for i in rest if clips[i].group.startswith("val/")]
        if not test:
            raise DataError(f"fold {self.fold} of {type(self).__name__} has no mixtures (sources under {self.root})")
        in_val = set(val)
        return {"train": [i for i in rest if i not in in_val], "val": val, "test": test}
