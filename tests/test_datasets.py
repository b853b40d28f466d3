"""Each dataset module on a tiny fake release in its official layout, the bad-metadata cases, and real data."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocls.audio.frontend import FrontendConfig
from audiocls.data import (
    CSVDataModule,
    ESC50DataModule,
    FolderDataModule,
    FSDDDataModule,
    GTZANDataModule,
    UrbanSound8KDataModule,
)
from audiocls.data.clips import stratified_folds
from audiocls.data.io import load_audio
from audiocls.errors import ConfigError, DataError
from tests.conftest import ESC10, FSDD, TINY_FRONTEND

TINY = FrontendConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_FRONTEND.items()})
SMALL = dict(frontend=TINY, num_workers=0, batch_size=2)


def _tone(seconds: float, sr: int, freq: float) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- UrbanSound8K ---------------------------------------------------------------------------------------
US8K_FORMATS = [
    (8000, 1, "PCM_U8"),
    (22050, 2, "PCM_16"),
    (44100, 1, "PCM_24"),
    (48000, 2, "FLOAT"),
    (96000, 1, "PCM_24"),
]


def make_us8k(root: Path, per_fold: int = 2) -> Path:
    """Official layout, mixed rates/channels/depths, clips of 0.3-1.2 s."""
    rows, k = [], 0
    for fold in range(1, 11):
        (root / "audio" / f"fold{fold}").mkdir(parents=True)
        for j in range(per_fold):
            cls = (fold + j) % 10
            sr, ch, sub = US8K_FORMATS[k % len(US8K_FORMATS)]
            name = f"{1000 + k}-{cls}-0-{j}.wav"
            wave = _tone(0.3 + 0.1 * (k % 10), sr, 200 * (cls + 1))
            sf.write(root / "audio" / f"fold{fold}" / name, np.stack([wave] * ch, axis=1), sr, subtype=sub)
            rows.append([name, 1000 + k, 0.0, 1.0, 1, fold, cls, f"class{cls}"])
            k += 1
    (root / "metadata").mkdir()
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def test_urbansound8k_official_layout(tmp_path):
    root = make_us8k(tmp_path / "UrbanSound8K")
    dm = UrbanSound8KDataModule(root, fold=3, val_fold=4, clip_seconds=1.0, sample_rate=16000, **SMALL)
    assert dm.num_classes == 10 and dm.class_names[6] == "gun_shot"
    dm.setup("fit")
    clips = dm.list_clips()
    assert {clips[i].fold for i in dm.splits["test"].indices} == {3}
    assert {clips[i].fold for i in dm.splits["val"].indices} == {4}
    assert len(dm.splits["train"]) == 16
    for split in dm.splits.values():  # every rate/depth/channel count decodes to the same rate
        for i in range(len(split)):
            wave, _ = split[i]
            assert wave.shape == (16000,) and torch.isfinite(wave).all()


def test_urbansound8k_short_clips_are_zero_padded_not_looped(tmp_path):
    root = make_us8k(tmp_path / "UrbanSound8K")
    dm = UrbanSound8KDataModule(root, fold=1, clip_seconds=2.0, sample_rate=8000, **SMALL)
    dm.setup("test")
    clip = dm.list_clips()[dm.splits["test"].indices[0]]
    wave, _ = dm.splits["test"][0]
    n = len(load_audio(clip.path, 8000))
    assert n < 16000 and wave[n:].abs().max() == 0 and wave[: n // 2].abs().max() > 0.1


@pytest.mark.parametrize(("column", "value", "match"), [("classID", "10", "label 10"), ("fold", "11", "fold 11")])
def test_urbansound8k_label_or_fold_out_of_range(tmp_path, column, value, match):
    root = make_us8k(tmp_path / "UrbanSound8K")
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = list(csv.DictReader(meta.open()))
    rows[3][column] = value
    with meta.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dm = UrbanSound8KDataModule(root, clip_seconds=1.0, sample_rate=8000, **SMALL)
    with pytest.raises(DataError, match=match):
        dm.setup("fit")


def test_urbansound8k_missing_metadata_names_layout_and_download(tmp_path):
    (tmp_path / "us" / "audio").mkdir(parents=True)
    with pytest.raises(DataError, match=r"metadata/UrbanSound8K\.csv.*audiocls data download urbansound8k"):
        UrbanSound8KDataModule(tmp_path / "us", **SMALL)


# --- GTZAN ----------------------------------------------------------------------------------------------
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_gtzan(root: Path, layout: str = "genres_original", ext: str = ".wav", per_genre: int = 10, seconds=0.3):
    """``<layout>/<genre>/<genre>.000NN<ext>``; jazz.00054 is a corrupt file, as in the WAV re-release."""
    for g, genre in enumerate(GENRES):
        d = root / layout / genre
        d.mkdir(parents=True)
        for n in range(per_genre):
            sf.write(d / f"{genre}.{n:05d}{ext}", _tone(seconds, 8000, 150 * (g + 1)), 8000)
    (root / layout / "jazz" / f"jazz.00054{ext}").write_bytes(b"\x00" * 64)
    return root


def test_gtzan_folds_stratified_fixed_and_known_bad_excluded(tmp_path, caplog):
    root = make_gtzan(tmp_path / "gtzan")
    with caplog.at_level(logging.INFO):
        dm = GTZANDataModule(root, fold=2, sample_rate=8000, clip_seconds=0.2, **SMALL)
        clips = dm.list_clips()
    assert "left out 1 known-unreadable" in caplog.text and "jazz.00054.wav" in caplog.text
    assert len(clips) == 100 and not any("00054" in c.path.name for c in clips)
    assert Counter((c.fold, c.label) for c in clips) == {(f, g): 1 for f in range(1, 11) for g in range(10)}
    # the folds depend on the files, not on the order they are listed in, and change with the seed
    folds = {c.path.name: c.fold for c in clips}
    keys, labels = [c.path.name for c in clips], [c.label for c in clips]
    perm = np.random.default_rng(1).permutation(len(keys))
    shuffled = stratified_folds([keys[i] for i in perm], [labels[i] for i in perm], 10, 0)
    assert all(folds[keys[i]] == f for i, f in zip(perm, shuffled, strict=True))
    assert stratified_folds(keys, labels, 10, 1) != [folds[k] for k in keys]
    dm.setup("fit")
    assert len(dm.splits["test"]) == 10 and {clips[i].fold for i in dm.splits["test"].indices} == {2}


def test_gtzan_au_layout_gives_the_same_folds(tmp_path):
    wav = GTZANDataModule(make_gtzan(tmp_path / "a"), sample_rate=8000, clip_seconds=0.2, **SMALL).list_clips()
    au = GTZANDataModule(make_gtzan(tmp_path / "b", "genres", ".au"), sample_rate=8000, clip_seconds=0.2, **SMALL)
    au_clips = au.list_clips()
    assert au.audio_dir.name == "genres" and au_clips[0].path.suffix == ".au"
    assert [(c.path.stem, c.fold) for c in wav] == [(c.path.stem, c.fold) for c in au_clips]
    assert load_audio(au_clips[0].path, 8000).shape == (2400,)


def test_gtzan_split_file_csv_and_filtered_lists(tmp_path):
    root = make_gtzan(tmp_path / "gtzan")
    with (tmp_path / "split.csv").open("w") as fh:
        fh.write("path,split\n")
        for g in GENRES:
            for n, s in ((0, "test"), (1, "val"), (2, "train"), (3, "train")):
                fh.write(f"{g}/{g}.{n:05d}.wav,{s}\n")
    dm = GTZANDataModule(root, split_file=tmp_path / "split.csv", sample_rate=8000, clip_seconds=0.2, **SMALL)
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 20, "val": 10, "test": 10}
    names = {dm.list_clips()[i].path.name for i in dm.splits["test"].indices}
    assert names == {f"{g}.00000.wav" for g in GENRES}
    # the fault-filtered split's format: one list per split; works on the .au layout too
    lists = tmp_path / "filtered"
    lists.mkdir()
    for split, n in (("train", 5), ("valid", 6), ("test", 7)):
        (lists / f"{split}_filtered.txt").write_text("".join(f"{g}/{g}.{n:05d}.wav\n" for g in GENRES))
    au = make_gtzan(tmp_path / "au", "genres", ".au")
    dm = GTZANDataModule(au, split_file=lists, sample_rate=8000, clip_seconds=0.2, **SMALL)
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 10, "val": 10, "test": 10}
    (lists / "test_filtered.txt").write_text("rock/rock.00099.wav\n")
    with pytest.raises(DataError, match="rock.00099"):
        GTZANDataModule(au, split_file=lists, sample_rate=8000, clip_seconds=0.2, **SMALL).list_clips()


def test_gtzan_sliding_window_evaluation(tmp_path):
    root = make_gtzan(tmp_path / "gtzan", per_genre=2, seconds=3.0)
    dm = GTZANDataModule(
        root, fold=1, sample_rate=8000, clip_seconds=1.0, eval_seconds=3.0, eval_hop_seconds=0.5, **SMALL
    )
    dm.setup("fit")
    wave, y = next(iter(dm.test_dataloader()))
    assert wave.shape == (2, 5, 8000)
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape == (2, 5, 3, 32, 64)


def test_gtzan_wrong_layout(tmp_path):
    (tmp_path / "music" / "blues").mkdir(parents=True)
    with pytest.raises(DataError, match=r"genres_original/<genre>.*audiocls data download gtzan"):
        GTZANDataModule(tmp_path / "music", **SMALL)


# --- FSDD -----------------------------------------------------------------------------------------------
def make_fsdd(root: Path, speakers=("anna", "bob", "carl"), takes: int = 7) -> Path:
    (root / "recordings").mkdir(parents=True)
    for s in speakers:
        for d in range(10):
            for t in range(takes):
                sf.write(root / "recordings" / f"{d}_{s}_{t}.wav", _tone(0.2 + 0.01 * t, 8000, 200 + 50 * d), 8000)
    (root / "recordings" / "README.txt").write_text("not audio")
    return root


def test_fsdd_official_split_holds_out_takes_0_to_4(tmp_path):
    dm = FSDDDataModule(make_fsdd(tmp_path / "fsdd"), val_fraction=0.0, **SMALL)
    dm.setup("fit")
    clips = dm.list_clips()
    assert len(clips) == 210 and len(dm.splits["test"]) == 150 and len(dm.splits["train"]) == 60
    assert all(int(clips[i].path.stem.split("_")[2]) < 5 for i in dm.splits["test"].indices)
    with pytest.raises(ConfigError, match="fold=2"):
        FSDDDataModule(tmp_path / "fsdd", fold=2, **SMALL)


def test_fsdd_speaker_held_out(tmp_path):
    dm = FSDDDataModule(make_fsdd(tmp_path / "fsdd"), split="speaker", fold=2, val_fold=3, **SMALL)
    dm.setup("fit")
    clips = dm.list_clips()
    speaker = lambda i: clips[i].path.stem.split("_")[1]  # noqa: E731
    assert {speaker(i) for i in dm.splits["test"].indices} == {"bob"}
    assert {speaker(i) for i in dm.splits["val"].indices} == {"carl"}
    assert {speaker(i) for i in dm.splits["train"].indices} == {"anna"}


# --- folder and CSV manifest ----------------------------------------------------------------------------
def make_folder(root: Path, classes=("cat", "dog", "owl"), n: int = 10) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            ext = (".wav", ".flac", ".ogg")[i % 3]
            sf.write(root / name / f"{i}{ext}", _tone(0.25, 8000, 300 * (c + 1)), 8000)
        (root / name / "notes.txt").write_text("not audio")
    return root


def test_folder_datamodule_classes_and_stratified_folds(tmp_path):
    dm = FolderDataModule(make_folder(tmp_path / "mine"), fold=5, sample_rate=8000, clip_seconds=0.25, **SMALL)
    assert dm.class_names == ["cat", "dog", "owl"]
    clips = dm.list_clips()
    assert len(clips) == 30 and {c.path.suffix for c in clips} == {".wav", ".flac", ".ogg"}
    assert Counter((c.fold, c.label) for c in clips) == {(f, y): 2 for f in range(1, 6) for y in range(3)}
    dm.setup("fit")
    assert len(dm.splits["test"]) == 6


def test_csv_manifest_with_folds_and_bad_rows(tmp_path):
    make_folder(tmp_path / "audio")
    rows = [(f"audio/{c}/{i}.{('wav', 'flac', 'ogg')[i % 3]}", c, 1 + i % 2) for c in ("owl", "cat") for i in range(6)]
    man = tmp_path / "clips.csv"

    def write(rows, header=("path", "label", "fold")):
        with man.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])

    write(rows)
    dm = CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL)
    assert dm.class_names == ["cat", "owl"] and dm.num_folds == 2
    dm.setup("fit")
    assert len(dm.splits["test"]) == 6
    write([r[:2] for r in rows], ("path", "label"))  # no fold column: stratified folds
    assert CSVDataModule(man, num_folds=3, sample_rate=8000, clip_seconds=0.25, **SMALL).num_folds == 3
    write([*rows, rows[0]])
    with pytest.raises(DataError, match="listed twice"):
        CSVDataModule(man, sample_rate=8000, clip_seconds=0.25, **SMALL).setup("fit")
    write([(p, c, 1 if f == 1 else 3) for p, c, f in rows])  # fold 2 is empty
    with pytest.raises(DataError, match="fold 2 .*no files"):
        CSVDataModule(man, fold=2, sample_rate=8000, clip_seconds=0.25, **SMALL).setup("fit")
    write(rows)
    with pytest.raises(DataError, match="not in data.class_names"):
        CSVDataModule(man, class_names=["cat", "dog"], sample_rate=8000, clip_seconds=0.25, **SMALL)


# --- ESC-50 metadata errors -----------------------------------------------------------------------------
def test_esc50_missing_root_and_meta(tmp_path):
    with pytest.raises(DataError, match=r"meta/esc50\.csv.*audio/.*audiocls data download esc50"):
        ESC50DataModule(tmp_path / "nowhere", **SMALL)
    with pytest.raises(ConfigError, match="data.root is not set"):
        ESC50DataModule(None, **SMALL)


def test_esc50_fold_outside_range_in_metadata(tiny_root, tmp_path):
    import shutil

    root = tmp_path / "esc"
    shutil.copytree(tiny_root, root)
    meta = root / "meta" / "esc50.csv"
    meta.write_text(meta.read_text().replace("\n1-", "\n1-", 1).replace(",1,0,", ",6,0,", 1))
    dm = ESC50DataModule(root, sample_rate=8000, clip_seconds=1.0, **SMALL)
    with pytest.raises(DataError, match="fold 6 outside 1..5"):
        dm.setup("fit")


# --- real data ------------------------------------------------------------------------------------------
@pytest.mark.real_data
@pytest.mark.skipif(not ESC10.is_dir(), reason="set AUDIOCLS_ESC50_ROOT to an ESC-50 folder")
def test_real_esc10_folds_and_classes():
    dm = ESC50DataModule(ESC10, esc10=True, fold=1, batch_size=8, num_workers=0, frontend=TINY)
    clips = dm.list_clips()
    dm.check_clips(clips)
    assert dm.num_classes == 10 and dm.class_names[0] == "dog"
    assert Counter(c.fold for c in clips) == {f: 80 for f in range(1, 6)}
    assert Counter(c.label for c in clips) == {y: 40 for y in range(10)}
    assert all(c.path.suffix == ".ogg" and c.path.is_file() for c in clips)
    split = dm.split(clips)
    assert len(split["test"]) == 80 and len(split["train"]) + len(split["val"]) == 320
    assert Counter(clips[i].label for i in split["val"]) == {y: 3 for y in range(10)}  # 10 % of 32 per class
    wave = load_audio(clips[0].path, 44100)  # OGG Vorbis decodes through soundfile
    assert 3.5 * 44100 < len(wave) < 7.5 * 44100 and np.abs(wave).max() > 0.01


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not ESC10.is_dir(), reason="set AUDIOCLS_ESC50_ROOT to an ESC-50 folder")
def test_real_esc10_batch():
    dm = ESC50DataModule(ESC10, esc10=True, fold=1, batch_size=8, num_workers=0, frontend=TINY)
    dm.prepare_data()
    dm.setup("fit")
    wave, y = next(iter(dm.train_dataloader()))
    assert wave.shape == (8, 220500) and wave.abs().max() > 0.01 and y.max() < 10
    spec, _ = dm.on_after_batch_transfer((wave, y), 0)
    assert spec.shape == (8, 3, 32, 64) and torch.isfinite(spec).all()


@pytest.mark.real_data
@pytest.mark.skipif(not FSDD.is_dir(), reason="set AUDIOCLS_FSDD_ROOT to an FSDD folder")
def test_real_fsdd_official_split_and_a_batch():
    dm = FSDDDataModule(FSDD, batch_size=16, num_workers=0, frontend=TINY, val_fraction=0.0)
    clips = dm.list_clips()
    assert len(clips) == 3000 and len(dm.speakers) == 6
    assert Counter(c.label for c in clips) == {d: 300 for d in range(10)}
    dm.setup("fit")
    assert len(dm.splits["train"]) == 2700 and len(dm.splits["test"]) == 300
    assert Counter(clips[i].label for i in dm.splits["test"].indices) == {d: 30 for d in range(10)}
    wave, y = next(iter(dm.train_dataloader()))
    assert wave.shape == (16, 8000) and wave.abs().max() > 0.01
