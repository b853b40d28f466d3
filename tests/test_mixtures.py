"""ESC-10-style mixtures: 1-3 clips of one fold overlaid at random SNRs, made once into the cache, no fold leaks."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.cli import main
from audiocls.data.mixtures import PEAK, ESC50MixturesDataModule, mix_waves
from audiocls.errors import ConfigError
from tests.conftest import TINY_FRONTEND
from tests.test_multilabel import sklearn_tagging_figures

SMALL = dict(esc10=False, sample_rate=8000, clip_seconds=1.0, batch_size=4, num_workers=0, val_fraction=0.25)


def _meta(root: Path) -> dict[str, dict[str, str]]:
    with (root / "meta" / "esc50.csv").open(newline="") as fh:
        return {r["filename"]: r for r in csv.DictReader(fh)}


def _rows(dm: ESC50MixturesDataModule) -> list[dict[str, str]]:
    dm.list_clips()  # makes them (once)
    with (dm.mixtures_dir() / "mixtures.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_mix_levels_follow_the_snr_and_never_clip():
    t = np.arange(8000) / 8000
    a, b = np.sin(2 * np.pi * 440 * t).astype(np.float32) * 0.5, np.sin(2 * np.pi * 97 * t).astype(np.float32) * 0.01
    mix = mix_waves([a, b], [0.0, -6.0], 8000)
    rms = lambda w: float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))  # noqa: E731
    scale = rms(b * (rms(a) * 10 ** (-6 / 20) / rms(b)))
    assert scale / rms(a) == pytest.approx(10 ** (-6 / 20), rel=1e-4)
    np.testing.assert_allclose(mix, a + b * (rms(a) * 10 ** (-6 / 20) / rms(b)), atol=1e-6)  # no peak scaling here
    loud = mix_waves([a * 1.9, a * 1.9], [0.0, 0.0], 8000)
    assert np.abs(loud).max() == pytest.approx(PEAK, abs=1e-6)
    assert len(mix_waves([a[:100], b], [0.0, 3.0], 8000)) == 8000  # short sources are zero-padded


def test_mixtures_never_leak_across_folds_or_between_train_and_val(tiny_root):
    dm = ESC50MixturesDataModule(tiny_root, **SMALL)
    assert dm.task == "multilabel"
    meta, rows = _meta(tiny_root), _rows(dm)
    assert {int(r["fold"]) for r in rows} == {1, 2, 3, 4, 5}
    pools: dict[tuple[int, str], set[str]] = {}
    for r in rows:
        sources = r["sources"].split(";")
        assert 1 <= len(sources) <= 3 and len(set(r["labels"].split(";"))) == len(sources)  # distinct classes
        assert {meta[s]["fold"] for s in sources} == {r["fold"]}  # only clips of the mixture's own fold
        assert [meta[s]["target"] for s in sources] == r["labels"].split(";")
        pools.setdefault((int(r["fold"]), r["pool"]), set()).update(meta[s]["src_file"] for s in sources)
    for fold in range(1, 6):  # a source recording makes validation or training mixtures, never both
        assert pools[(fold, "val")] and not pools[(fold, "val")] & pools[(fold, "train")]
    dm.setup("fit")
    clips = dm.list_clips()
    test = dm.splits["test"]
    assert {clips[i].fold for i in test.indices} == {1} and len(test.indices) == 12
    assert {clips[i].fold for i in dm.splits["train"].indices + dm.splits["val"].indices} == {2, 3, 4, 5}
    assert all(clips[i].group.startswith("val/") for i in dm.splits["val"].indices)
    wave, y = dm.splits["test"][0]
    assert y.shape == (4,) and y.sum() == len(clips[test.indices[0]].labels)
    assert max(len(c.labels) for c in clips) > 1


def test_a_mixture_is_its_sources_overlaid(tiny_root):
    from audiocls.data.io import load_audio

    dm = ESC50MixturesDataModule(tiny_root, **SMALL)
    row = next(r for r in _rows(dm) if len(r["sources"].split(";")) == 3)
    sources = [load_audio(tiny_root / "audio" / s, 8000) for s in row["sources"].split(";")]
    want = mix_waves(sources, [float(g) for g in row["gains_db"].split(";")], 8000)
    got, sr = sf.read(dm.mixtures_dir() / "audio" / row["filename"], dtype="float32")
    assert sr == 8000 and np.abs(got - want).max() < 2 / 2**15  # 16-bit WAV


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_mixtures_are_made_once_and_are_the_same_in_every_cache(tiny_root, tmp_path):
    a = ESC50MixturesDataModule(tiny_root, cache_dir=tmp_path / "A", **SMALL)
    a.list_clips()
    stamp = {p: p.stat().st_mtime_ns for p in a.mixtures_dir().rglob("*.wav")}
    again = ESC50MixturesDataModule(tiny_root, cache_dir=tmp_path / "A", **SMALL)
    again.list_clips()
    assert {p: p.stat().st_mtime_ns for p in again.mixtures_dir().rglob("*.wav")} == stamp  # reused, not rewritten
    b = ESC50MixturesDataModule(tiny_root, cache_dir=tmp_path / "B", **SMALL)
    b.list_clips()
    assert a.mixtures_dir().name == b.mixtures_dir().name and _digest(a.mixtures_dir()) == _digest(b.mixtures_dir())
    other = ESC50MixturesDataModule(tiny_root, cache_dir=tmp_path / "A", mix_seed=1, **SMALL)
    assert other.mixtures_dir() != a.mixtures_dir()
    other.list_clips()
    assert _digest(other.mixtures_dir()) != _digest(a.mixtures_dir())


def test_bad_mixing_settings_are_refused(tiny_root):
    with pytest.raises(ConfigError, match="max_sources"):
        ESC50MixturesDataModule(tiny_root, max_sources=1, **SMALL)
    with pytest.raises(ConfigError, match="snr_db"):
        ESC50MixturesDataModule(tiny_root, snr_db=(5.0, -5.0), **SMALL)


def test_esc10_mixtures_config_fits_on_a_fake_release(tiny_root, tmp_path):
    """configs/esc10_mixtures.yaml with the CPU recipe, as the README stacks them (precomputed spectrograms, normalisation, val/mAP), on a fake ESC-50 tree
    with a tiny model and frontend: a few batches train, test logs mAP, thresholds come back in the checkpoint."""
    configs = Path(__file__).resolve().parents[1] / "configs"
    args = [
        "fit", "--config", str(configs / "esc10_mixtures.yaml"), "--config", str(configs / "recipes" / "cpu.yaml"),
        "--model.label_smoothing=0", f"--data.root={tiny_root}", "--data.esc10=false", "--data.sample_rate=8000",
        "--data.clip_seconds=1.0", "--data.batch_size=4", f"--data.frontend={json.dumps(TINY_FRONTEND)}",
        "--data.augment.time_mask_width=4", "--data.augment.freq_mask_width=4",
        "--model.backbone=test_resnet", "--model.pretrained=false", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3", "--trainer.enable_progress_bar=false",
        "--trainer.logger.init_args.save_dir=runs", "--checkpoint.dirpath=ckpt",
        "--data.validate_test_fold=true",
        "--trainer.callbacks+=" + json.dumps({"class_path": "audiocls.commands.cv.TestFoldEachEpoch",
                                               "init_args": {"dirpath": "fold"}}),  # saves the test scores
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads(next(Path("runs").rglob("metrics.json")).read_text())
    # the test figures are sklearn's on the scores of the test fold (fold 1), saved by the callback
    saved = np.load(Path("fold") / "predictions.npz")
    probs, target = saved["probs"].astype(np.float64), saved["labels"]
    assert probs.shape == target.shape == (12, 4) and target.sum(1).max() > 1  # 4 classes, 12 mixtures
    for key, want in sklearn_tagging_figures(probs, target).items():
        assert metrics[f"test/{key}"] == pytest.approx(want, abs=1e-5), key
    ckpt = torch.load("ckpt/best.ckpt", weights_only=True)
    assert ckpt["datamodule_hyper_parameters"]["max_sources"] == 3 and bool(ckpt["state_dict"]["thresholds_tuned"])
    assert any("val/mAP" in k for k in ckpt["callbacks"])
