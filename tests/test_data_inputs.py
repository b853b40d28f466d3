"""Validation grouped by source, training-split normalisation, stored spectrograms, and fit through the CLI for
every datamodule on fake releases (issues 12, 15, 17)."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.audio.augment import AugmentConfig, SpecAugment
from audiocls.audio.frontend import FrontendConfig, build_frontend
from audiocls.cli import main
from audiocls.data import ESC50DataModule, FSDDDataModule, SyntheticDataModule, UrbanSound8KDataModule
from audiocls.data.clips import Clip, grouped_val_split
from audiocls.data.esc50 import ESC10_TARGETS
from audiocls.data.io import load_audio, pad_or_crop
from audiocls.errors import ConfigError, DataError
from tests.conftest import TINY_FRONTEND
from tests.test_datasets import make_folder, make_fsdd, make_gtzan, make_us8k

TINY = FrontendConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_FRONTEND.items()})
SR = 8000


def make_esc50(root: Path, classes=(0, 1, 2), sources=2, takes=3, seconds=1.0, targets=None, loud_fold=None) -> Path:
    """ESC-50 layout with ``sources`` recordings x ``takes`` clips per class and fold; ``loud_fold`` gets noise."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows, rng = [], np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    for fold in range(1, 6):
        for label in classes:
            target = label if targets is None else targets[label]
            for s in range(sources):
                src = f"{fold}{label:02d}{s}"
                for k, take in enumerate("ABCDEFG"[:takes]):
                    name = f"{fold}-{src}-{take}-{target}.wav"
                    wave = 0.3 * np.sin(2 * np.pi * (300 * (label + 1) + 20 * k) * t)
                    if fold == loud_fold:
                        wave = 0.9 * rng.uniform(-1, 1, len(t))
                    sf.write(root / "audio" / name, wave.astype(np.float32), SR)
                    rows.append([name, fold, target, f"c{target}", "True", src, take])
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return root


def _esc(root, **kw):
    kw = {"sample_rate": SR, "clip_seconds": 1.0, "frontend": TINY, "num_workers": 0, "batch_size": 4, **kw}
    return ESC50DataModule(root, **kw)


# --- validation grouped by source -----------------------------------------------------------------------------
def _sides(dm, key):
    clips = dm.list_clips()
    return {name: {key(clips[i]) for i in ds.indices} for name, ds in dm.splits.items()}


def test_esc50_validation_keeps_each_src_file_on_one_side(tmp_path):
    root = make_esc50(tmp_path / "esc", sources=3, takes=3)
    for seed in range(4):
        dm = _esc(root, fold=2, val_fraction=0.25, seed=seed)
        dm.setup("fit")
        sides = _sides(dm, lambda c: c.group)
        assert not (sides["train"] & sides["val"]) and not (sides["train"] & sides["test"])
        assert not (sides["val"] & sides["test"])
        labels = [dm.list_clips()[i].label for i in dm.splits["val"].indices]
        assert sorted(set(labels)) == [0, 1, 2]  # stratified: every class in validation, 3 whole recordings each
        assert len(dm.splits["val"]) == 27 and len(dm.splits["train"]) == 81


def test_urbansound8k_validation_keeps_each_fsid_on_one_side(tmp_path):
    root = make_us8k(tmp_path / "us8k", per_fold=6)
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = list(csv.reader(meta.open()))
    for n, r in enumerate(rows[1:]):  # slices of one recording: two per fsID, within one fold as in the release
        r[1] = str(5000 + n // 2)
    with meta.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    dm = UrbanSound8KDataModule(root, fold=1, val_fraction=0.3, frontend=TINY, num_workers=0, batch_size=2)
    dm.setup("fit")
    sides = _sides(dm, lambda c: c.group)
    assert sides["val"] and not (sides["train"] & sides["val"]) and not (sides["val"] & sides["test"])


def test_fsdd_speaker_split_validates_on_whole_speakers(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", speakers=("anna", "bob", "carl", "dora", "eve"))
    dm = FSDDDataModule(root, split="speaker", fold=1, val_fraction=0.25, frontend=TINY, num_workers=0, batch_size=2)
    dm.setup("fit")
    sides = _sides(dm, lambda c: c.path.stem.split("_")[1])
    assert sides["test"] == {"anna"} and len(sides["val"]) == 1
    assert not (sides["train"] & sides["val"]) and len(sides["train"]) == 3


def test_grouped_split_is_stratified_and_exact_for_single_clip_groups():
    clips = [Clip(Path(f"{i}.wav"), i % 4) for i in range(80)]
    val = grouped_val_split(clips, range(80), 0.25, seed=3)
    assert sorted(np.bincount([clips[i].label for i in val]).tolist()) == [5, 5, 5, 5]
    grouped = [Clip(Path(f"{i}.wav"), i % 2, group=str(i // 10)) for i in range(40)]  # 4 groups, 2 classes
    val = grouped_val_split(grouped, range(40), 0.25, seed=0)
    assert len({grouped[i].group for i in val}) * 10 == len(val)  # whole groups only


# --- normalisation from the training split -----------------------------------------------------------------
def _expected_train_stats(dm):
    """Per-channel mean/std of the raw frontend over the training clips, clip by clip (independent of dm)."""
    raw = build_frontend(TINY, SR)
    clips = dm.list_clips()
    specs = [
        raw(torch.from_numpy(pad_or_crop(load_audio(clips[i].path, SR), SR))[None]) for i in dm.splits["train"].indices
    ]
    spec = torch.cat(specs).double()
    return spec.mean((0, 2, 3)).numpy(), spec.std((0, 2, 3), unbiased=False).numpy()


@pytest.mark.parametrize("precompute", [False, True])
def test_normalize_train_measures_the_training_split_only(tmp_path, precompute):
    quiet = make_esc50(tmp_path / "quiet")
    loud = make_esc50(tmp_path / "loud", loud_fold=1)  # the test fold (1) differs, nothing else
    stats = []
    for root in (quiet, loud):
        dm = _esc(root, fold=1, normalize="train", precompute_frontend=precompute)
        dm.setup("fit")
        stats.append((list(dm.frontend.config.mean), list(dm.frontend.config.std)))
        assert (
            dm.hparams["frontend"]["mean"] is None
        )  # measured state, not a rewritten setting (the checkpoint keeps it)
    assert stats[0] == stats[1]  # the test fold never enters the statistics
    mean, std = _expected_train_stats(dm)
    np.testing.assert_allclose(stats[0][0], mean, atol=1e-4)
    np.testing.assert_allclose(stats[0][1], std, rtol=1e-4)
    assert dm.frontend.config.mean == tuple(stats[0][0])
    all_clips = _esc(loud, fold=1)
    all_clips.setup("fit")
    assert not np.allclose(stats[1][0], _expected_train_stats(_with_all_as_train(all_clips))[0], atol=0.1)


def _with_all_as_train(dm):
    dm.splits["train"].indices = sorted(i for ds in dm.splits.values() for i in ds.indices)
    return dm


def test_normalize_refuses_a_given_mean():
    with pytest.raises(ConfigError, match="normalize=train.*frontend.mean"):
        ESC50DataModule(None, normalize="train", frontend=FrontendConfig(mean=(0.0, 0.0, 0.0)))


# --- stored spectrograms ---------------------------------------------------------------------------------------
def _eval_specs(dm, name):
    dm.trainer = SimpleNamespace(training=False, world_size=1)
    out = [dm.on_after_batch_transfer(b, 0)[0] for b in getattr(dm, f"{name}_dataloader")()]
    return torch.cat(out)


@pytest.mark.parametrize("windows", [False, True])
def test_precomputed_spectrograms_equal_the_per_batch_path(tmp_path, windows):
    root = make_esc50(tmp_path / "esc", seconds=2.0 if windows else 1.0)
    kw = dict(fold=3, normalize="train", augment=AugmentConfig(time_roll=1.0, freq_masks=2, freq_mask_width=4))
    if windows:
        kw.update(eval_seconds=2.0, eval_hop_seconds=0.5)
    per_batch, stored = _esc(root, **kw), _esc(root, precompute_frontend=True, **kw)
    for dm in (per_batch, stored):
        dm.setup("fit")
    assert per_batch.frontend.config == stored.frontend.config
    for name in ("val", "test"):
        a, b = _eval_specs(per_batch, name), _eval_specs(stored, name)
        assert a.shape == b.shape and torch.equal(a, b)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with torch.no_grad():
        assert torch.equal(model(a.flatten(0, -4)), model(b.flatten(0, -4)))
    stored.trainer = SimpleNamespace(
        training=True, world_size=1
    )  # training: spectrogram augmentation on the stored images
    spec, y = next(iter(stored.train_dataloader()))
    out, _ = stored.on_after_batch_transfer((spec, y), 0)
    assert out.shape == spec.shape and not torch.allclose(out, (spec - stored.frontend.mean) / stored.frontend.std)


def test_precompute_refuses_waveform_augmentation(tmp_path):
    root = make_esc50(tmp_path / "esc")
    for aug, name in (
        (AugmentConfig(gain_db=6.0), "gain_db"),
        (AugmentConfig(time_stretch=(0.9, 1.1)), "time_stretch"),
    ):
        with pytest.raises(ConfigError, match=f"precompute_frontend=true.*augment.{name}"):
            _esc(root, precompute_frontend=True, augment=aug)


def test_a_cpu_fit_recomputing_the_same_spectrograms_is_told_about_precompute(tmp_path, caplog):
    """The notice comes exactly when every epoch's frontend output would be the stored one: a CPU accelerator,
    no waveform augmentation, no clip longer than the crop."""
    from lightning.pytorch.accelerators import CPUAccelerator

    short, long = make_esc50(tmp_path / "short"), make_esc50(tmp_path / "long", seconds=2.0)
    cpu = SimpleNamespace(accelerator=CPUAccelerator(), is_global_zero=True)
    other = SimpleNamespace(accelerator=object(), is_global_zero=True)
    spec_side = AugmentConfig(time_roll=1.0, freq_masks=1, freq_mask_width=4)
    cases = [
        (short, {}, cpu, True),
        (short, {"augment": spec_side}, cpu, True),  # spectrogram-side augmentation runs on stored images too
        (short, {"augment": AugmentConfig(gain_db=3.0)}, cpu, False),  # waveform augmentation: per batch
        (short, {"precompute_frontend": True}, cpu, False),  # already stored
        (short, {}, other, False),  # a GPU computes the frontend on the device
        (short, {}, None, False),  # no trainer (a script): says nothing
        (long, {}, cpu, False),  # 2 s clips, 1 s crops: random crops differ per epoch
    ]
    for root, kw, trainer, told in cases:
        caplog.clear()
        dm = _esc(root, **kw)
        dm.trainer = trainer
        with caplog.at_level("INFO", logger="audiocls.data.base"):
            dm.setup("fit")
        said = [r.getMessage() for r in caplog.records if "precompute_frontend=true computes" in r.getMessage()]
        assert bool(said) == told, (root.name, kw, trainer)


def test_time_roll_is_a_circular_roll_per_clip():
    spec = torch.randn(6, 3, 8, 20)
    aug = SpecAugment(AugmentConfig(time_roll=1.0))
    out = aug(spec)
    for i in range(6):
        assert any(torch.equal(out[i], spec[i].roll(k, dims=-1)) for k in range(20))
    assert not torch.equal(out, spec)
    assert torch.equal(aug.eval()(spec), spec)


# --- dataset modules (issues 12, 15) ------------------------------------------------------------------------------
def test_esc10_mode_refuses_a_target_outside_the_ten_classes(tmp_path):
    targets = dict(zip(range(3), ESC10_TARGETS[:2] + (5,), strict=True))  # 5 is not an ESC-10 class
    root = make_esc50(tmp_path / "esc", targets=targets)
    with pytest.raises(DataError, match="outside the ten ESC-10 classes.*target 5"):
        _esc(root, esc10=True)
    good = make_esc50(tmp_path / "good", targets=dict(zip(range(3), ESC10_TARGETS[:3], strict=True)))
    assert _esc(good, esc10=True).num_classes == 3


def test_esc50_takes_sample_rate_and_clip_seconds_as_typed_arguments():
    params = inspect.signature(ESC50DataModule.__init__).parameters
    assert params["sample_rate"].annotation in (int, "int") and params["sample_rate"].default == 44100
    assert params["clip_seconds"].default == 5.0


def test_synthetic_writes_its_files_in_prepare_data_only(tmp_path):
    root = tmp_path / "syn"
    dm = SyntheticDataModule(
        root, num_classes=3, clips_per_fold=1, seconds=0.5, sample_rate=SR, frontend=TINY, batch_size=2
    )
    assert dm.class_names == ["tone", "chirp_up", "chirp_down"] and not any(root.iterdir())
    with pytest.raises(DataError, match="prepare_data"):
        dm.setup("fit")
    dm.prepare_data()
    assert (root / "meta" / "esc50.csv").is_file()
    dm.setup("fit")
    assert len(dm.splits["test"]) == 3


# --- fit through the CLI, every datamodule, one batch per phase ----------------------------------------------------
COMMON = [
    "--seed_everything=0",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--model.backbone=test_resnet",
    "--data.num_workers=0",
    "--data.batch_size=2",
    f"--data.frontend={json.dumps(TINY_FRONTEND)}",
]


def _csv_manifest(tmp_path: Path) -> Path:
    make_folder(tmp_path / "audio")
    man = tmp_path / "clips.csv"
    rows = [(f"audio/{c}/{i}.{('wav', 'flac', 'ogg')[i % 3]}", c) for c in ("owl", "cat", "dog") for i in range(10)]
    with man.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])
    return man


DATASETS = {
    "esc50": lambda p: ["--data=audiocls.data.esc50.ESC50DataModule", f"--data.root={make_esc50(p)}"],
    "esc10": lambda p: [
        "--data=audiocls.data.esc50.ESC50DataModule",
        f"--data.root={make_esc50(p, targets=dict(zip(range(3), ESC10_TARGETS[:3], strict=True)))}",
        "--data.esc10=true",
    ],
    "urbansound8k": lambda p: [
        "--data=audiocls.data.urbansound8k.UrbanSound8KDataModule",
        f"--data.root={make_us8k(p, per_fold=4)}",
        "--data.sample_rate=8000",
        "--data.clip_seconds=1.0",
        "--data.val_fold=2",
    ],
    "gtzan": lambda p: [
        "--data=audiocls.data.gtzan.GTZANDataModule",
        f"--data.root={make_gtzan(p, per_genre=10, seconds=0.5)}",
        "--data.sample_rate=8000",
        "--data.clip_seconds=0.5",
        "--data.val_fold=2",
    ],
    "fsdd": lambda p: [
        "--data=audiocls.data.fsdd.FSDDDataModule",
        f"--data.root={make_fsdd(p)}",
        "--data.val_fraction=0.2",
    ],
    "folder": lambda p: [
        "--data=audiocls.data.folder.FolderDataModule",
        f"--data.root={make_folder(p)}",
        "--data.clip_seconds=0.25",
        "--data.val_fold=2",
    ],
    "csv": lambda p: [
        "--data=audiocls.data.folder.CSVDataModule",
        f"--data.manifest={_csv_manifest(p)}",
        "--data.clip_seconds=0.25",
        "--data.val_fold=2",
    ],
    "synthetic": lambda p: [
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        f"--data.root={p / 'syn'}",
        "--data.num_classes=3",
        "--data.clips_per_fold=2",
        "--data.seconds=0.5",
        "--data.fold=2",  # an AudioDataModule argument through **kwargs, as configs/demo.yaml sets it
    ],
}


#: what each fake release above must give through the CLI (test fold 1, or 2 for synthetic): the class names, the
#: clips of each split and the folds they come from (``None``: a clip of no fold), worked out from the generators:
#: - esc50: 3 classes x 5 folds x 2 sources x 3 takes; test = fold 1 (3 x 6 = 18); validation takes whole sources,
#:   per class round(24 * 0.1) = 2 clips asked, the nearest whole-source count is 3: 9; train 72 - 9 = 63
#: - esc10: the same tree with targets 0, 1 and 10, all ESC-10 classes
#: - urbansound8k: 10 folds x 4 clips; test fold 1, val_fold 2, train the other 8 folds (32)
#: - gtzan: 10 genres x 10 readable clips (jazz.00054 is unreadable) dealt 1 per genre into 10 folds: 10, 10, 80
#: - fsdd: 3 speakers x 10 digits x 7 takes; the official test set is takes 0-4 (150); each of the 60 other clips is
#:   its own group, per digit round(6 * 0.2) = 1 to validation (10), 50 train
#: - folder and csv: 3 classes x 10 clips dealt 2 per class into 5 folds: test fold 1 (6), val_fold 2 (6), 18
#: - synthetic: 3 classes x 5 folds x 2 clips, each its own source; test fold 2 (6), 1 per class to validation (3), 21
EXPECTED = {
    "esc50": (["c0", "c1", "c2"], (63, 9, 18), ({2, 3, 4, 5}, {2, 3, 4, 5}, {1})),
    "esc10": (["c0", "c1", "c10"], (63, 9, 18), ({2, 3, 4, 5}, {2, 3, 4, 5}, {1})),
    "urbansound8k": ("urbansound8k", (32, 4, 4), (set(range(3, 11)), {2}, {1})),
    "gtzan": ("gtzan", (80, 10, 10), (set(range(3, 11)), {2}, {1})),
    "fsdd": ([str(d) for d in range(10)], (50, 10, 150), ({None}, {None}, {1})),
    "folder": (["cat", "dog", "owl"], (18, 6, 6), ({3, 4, 5}, {2}, {1})),
    "csv": (["cat", "dog", "owl"], (18, 6, 6), ({3, 4, 5}, {2}, {1})),
    "synthetic": (["tone", "chirp_up", "chirp_down"], (21, 3, 6), ({1, 3, 4, 5}, {1, 3, 4, 5}, {2})),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fit_through_the_cli_on_every_datamodule(tmp_path, name, monkeypatch):
    """Each datamodule, through the CLI, gives the clips, classes and folds its fake release was built to give."""
    from audiocls.data.gtzan import GENRES
    from audiocls.data.urbansound8k import CLASSES as US8K_CLASSES
    from audiocls.training import cli as training_cli

    clis = []
    real_run_cli = training_cli.run_cli
    monkeypatch.setattr(training_cli, "run_cli", lambda *a, **k: clis.append(real_run_cli(*a, **k)) or clis[-1])
    args = DATASETS[name](tmp_path / name)
    if name in ("esc50", "esc10", "synthetic"):
        args += ["--data.sample_rate=8000", "--data.clip_seconds=" + ("0.5" if name == "synthetic" else "1.0")]
    extra = ["--data.normalize=train", "--data.precompute_frontend=true"] if name in ("esc50", "fsdd") else []
    assert main(["fit", *COMMON, *args, *extra, f"--trainer.default_root_dir={tmp_path}"]) == 0
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())  # under default_root_dir (issue 15)
    assert "test/acc" in metrics and np.isfinite(metrics["test/acc"])
    assert not Path("runs").exists()

    names, sizes, folds = EXPECTED[name]
    names = {"urbansound8k": list(US8K_CLASSES), "gtzan": list(GENRES)}.get(name, names)
    (cli,) = clis
    dm = cli.datamodule
    assert dm.class_names == names and cli.model.class_names == names and cli.model.num_classes == len(names)
    clips = dm.list_clips()
    split = {k: dm.splits[k].indices for k in ("train", "val", "test")}
    assert tuple(len(split[k]) for k in ("train", "val", "test")) == sizes
    train, val, test = (set(split[k]) for k in ("train", "val", "test"))
    assert not train & val and not (train | val) & test
    assert {clips[i].fold for i in split["test"]} == folds[2]
    assert {clips[i].fold for i in split["val"]} <= folds[1] and {clips[i].fold for i in split["train"]} == folds[0]
    # every class is in the test split, in the numbers the layout gives
    test_labels = sorted(clips[i].label for i in split["test"])
    assert set(test_labels) == ({1, 2, 3, 4} if name == "urbansound8k" else set(range(len(names))))


def test_normalisation_is_restored_from_the_checkpoint(tmp_path):
    from audiocls.training.checkpoints import load_checkpoint

    root = make_esc50(tmp_path / "esc")
    args = [*COMMON, "--data=audiocls.data.esc50.ESC50DataModule", f"--data.root={root}", "--data.sample_rate=8000"]
    args += ["--data.clip_seconds=1.0", "--data.normalize=train", "--data.precompute_frontend=true"]
    assert main(["fit", *args]) == 0
    ckpt = next(Path("runs").rglob("last.ckpt"))
    dm = _esc(root, normalize="train")
    dm.setup("fit")
    loaded = load_checkpoint(ckpt)
    assert loaded.frontend.config.mean == dm.frontend.config.mean is not None
    assert loaded.frontend.config.std == dm.frontend.config.std
    wave = torch.from_numpy(pad_or_crop(load_audio(dm.list_clips()[0].path, SR), SR))[None]
    assert torch.equal(loaded.frontend(wave), dm.frontend(wave))
    saved = torch.load(ckpt, weights_only=True)
    assert tuple(saved["ESC50DataModule"]["frontend_mean"]) == dm.frontend.config.mean  # the datamodule's state
    assert main(["test", *args, f"--ckpt_path={ckpt}"]) == 0  # the measured stats are not a config mismatch
