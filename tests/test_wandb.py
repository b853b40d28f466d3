"""W&B through configs/logger/wandb.yaml, offline in tmp: the run is read back from its own files.

Nothing here reaches the network: ``WANDB_MODE=offline`` for the fit, and the key detection is checked on a
parsed config without starting a run. No W&B state outlives a test (the run is finished, the env restored).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from audiocls.cli import main
from audiocls.training.tracking import (
    configure_wandb,
    extra_callbacks,
    run_tags,
    spectrogram_image,
    wandb_key_configured,
)

ROOT = Path(__file__).resolve().parents[1]
WANDB_YAML = ROOT / "configs" / "logger" / "wandb.yaml"


def read_offline_run(run_dir: Path) -> dict:
    """Config, summary, tags, name and history of an offline run, decoded from its ``run-<id>.wandb`` log.

    wandb >= 0.19 writes neither ``wandb-summary.json`` nor ``config.yaml`` for an offline run and has no
    Python reader of its record log any more; the log is LevelDB's format (32 KiB blocks of records with a
    7-byte header: crc32, length, type) holding ``wandb.proto`` ``Record`` messages, which is what
    ``wandb sync`` uploads.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    raw = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert raw[:4] == b":W&B", raw[:7]
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        data, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # FULL
            records.append(data)
        elif kind == 2:  # FIRST
            pending = data
        elif kind == 3:  # MIDDLE
            pending += data
        elif kind == 4:  # LAST
            records.append(pending + data)

    def put(target: dict, item) -> None:
        keys = list(item.nested_key) or [item.key]
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = json.loads(item.value_json)

    run = {"config": {}, "summary": {}, "history": [], "tags": [], "name": None, "id": None, "artifacts": []}
    for data in records:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["name"], run["tags"] = record.run.run_id, record.run.display_name, list(record.run.tags)
            for item in record.run.config.update:
                put(run["config"], item)
        elif kind == "config":
            for item in record.config.update:
                put(run["config"], item)
        elif kind == "summary":
            for item in record.summary.update:
                put(run["summary"], item)
        elif kind == "history":
            row: dict = {}
            for item in record.history.item:
                put(row, item)
            run["history"].append(row)
        elif kind == "artifact":
            run["artifacts"].append(record.artifact.type)
    return run


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """Offline W&B writing under tmp; checks that no run is left open and the env is as it was."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # belt and braces: nothing to reach there
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)  # wandb's service process, started by the run
    before = {k: v for k, v in os.environ.items() if k.startswith("WANDB_") and k != "WANDB_SERVICE"}
    yield
    assert wandb.run is None, "a W&B run was left open"
    wandb.teardown()  # stop the service process too
    assert {k: v for k, v in os.environ.items() if k.startswith("WANDB_") and k != "WANDB_SERVICE"} == before


def test_offline_fit_writes_a_run_with_test_acc_config_and_media(tiny_args, tmp_path, wandb_offline, capsys):
    import wandb

    args = ["fit", "--config", str(WANDB_YAML), *tiny_args, "--trainer.max_epochs=1"]
    args += ["--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    wandb.teardown()  # the service writes the end of the run's log when it stops

    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert f"wandb sync {run_dir.relative_to(tmp_path)}" in out

    # the CLI's own record of the run lives in a folder of its own, named by the W&B run id
    own = tmp_path / "runs" / "audiocls" / run["id"]
    metrics = json.loads((own / "metrics.json").read_text())
    assert (own / "config.yaml").is_file() and (own / "checkpoints" / "last.ckpt").is_file()
    assert run["summary"]["test/acc"] == pytest.approx(metrics["test/acc"])

    # the fully resolved config (LoggedSaveConfigCallback), next to Lightning's hyperparameters
    assert run["config"]["model"]["backbone"] == "test_resnet"
    assert run["config"]["data"]["init_args"]["batch_size"] == 4
    assert run["config"]["backbone"] == "test_resnet"
    assert {"test_resnet", "random", "synthetic", "fold1"} <= set(run["tags"])
    assert run["name"] == "synthetic-fold1-test_resnet"
    assert "model" not in run["artifacts"]  # checkpoints are uploaded only when asked (log_model)

    logged = {k for row in run["history"] for k in row}
    assert any(k.startswith("lr-") for k in logged), logged  # LearningRateMonitor
    assert {"train/loss_epoch", "val/acc", "test/acc"} <= logged
    examples = next(row["examples/spectrograms"] for row in run["history"] if "examples/spectrograms" in row)
    assert examples["count"] == 4 * 2  # two clips of each of the 4 classes

    # per-class table: every test clip counted once, and its totals give the logged test accuracy
    (table,) = (run_dir / "files" / "media" / "table" / "test").glob("per_class_*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert [r[0] for r in rows] == ["tone", "chirp_up", "chirp_down", "noise_band"]
    assert sum(r[1] for r in rows) == 12  # 4 classes x 3 clips in fold 1
    assert sum(r[2] for r in rows) / 12 == pytest.approx(metrics["test/acc"])
    assert list((run_dir / "files" / "media" / "table" / "test").glob("confusion_matrix_table_*.table.json"))


def wandb_config(**init_args) -> Namespace:
    logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(**init_args))
    return Namespace(
        trainer=Namespace(logger=logger, callbacks=None),
        model=Namespace(backbone="densenet201", pretrained=True, weights=None),
        data=Namespace(class_path="audiocls.data.esc50.ESC50DataModule", init_args=Namespace(fold=3, esc10=True)),
    )


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_offline_is_chosen_only_without_a_key(no_credentials, monkeypatch):
    config = wandb_config(name=None, tags=None, mode=None, offline=False)
    assert configure_wandb(config)
    assert config.trainer.logger.init_args.mode == "offline"

    no_credentials.write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    assert wandb_key_configured()
    config = wandb_config(name=None, tags=None, mode=None, offline=False)
    configure_wandb(config)
    assert config.trainer.logger.init_args.mode is None  # logged in with `wandb login`: online

    no_credentials.write_text("machine example.org\n  login user\n  password x\n")
    assert not wandb_key_configured()  # a netrc entry for another host is no W&B key
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    assert wandb_key_configured()


@pytest.mark.parametrize("choice", [{"offline": True}, {"mode": "disabled"}, {"env": "online"}])
def test_a_mode_the_user_chose_is_kept(no_credentials, monkeypatch, choice):
    if "env" in choice:
        monkeypatch.setenv("WANDB_MODE", choice["env"])
    config = wandb_config(name=None, tags=None, mode=choice.get("mode"), offline=choice.get("offline", False))
    configure_wandb(config)
    assert config.trainer.logger.init_args.mode == choice.get("mode")


def test_tags_and_name_come_from_the_config_and_keep_the_users(no_credentials):
    config = wandb_config(name=None, tags=["mine", "esc10"], mode="offline")
    configure_wandb(config)
    args = config.trainer.logger.init_args
    assert args.tags == ["mine", "esc10", "densenet201", "pretrained", "fold3"]
    assert args.name == "esc10-fold3-densenet201"
    config = wandb_config(name="given", tags=None, mode="offline")
    configure_wandb(config)
    assert config.trainer.logger.init_args.name == "given"
    assert run_tags(config) == ["densenet201", "pretrained", "esc10", "fold3"]


def test_other_loggers_are_left_alone(no_credentials):
    csv = Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir="runs"))
    config = Namespace(trainer=Namespace(logger=csv), model=Namespace(backbone="x"))
    assert not configure_wandb(config)
    assert config.trainer.logger.init_args == Namespace(save_dir="runs")
    assert not configure_wandb(Namespace(trainer=Namespace(logger=False)))


def test_extra_callbacks_are_not_added_twice():
    lr = Namespace(class_path="lightning.pytorch.callbacks.LearningRateMonitor", init_args=Namespace())
    assert [type(c).__name__ for c in extra_callbacks(None)] == ["LearningRateMonitor", "WandbMedia"]
    assert [type(c).__name__ for c in extra_callbacks([lr])] == ["WandbMedia"]


def test_spectrogram_image_puts_low_frequencies_at_the_bottom():
    spec = torch.zeros(3, 8, 5)
    spec[:, 0] = 1.0  # energy in the lowest mel bin of every channel
    image = spectrogram_image(spec)
    assert image.shape == (3 * 8, 5, 3) and image.dtype.name == "uint8"
    brightness = image.astype(float).sum(-1)
    for c in range(3):
        rows = brightness[c * 8 : (c + 1) * 8]
        assert rows[-1].min() > rows[:-1].max()


def test_offline_multilabel_fit_logs_examples_and_per_class_ap(tmp_path, wandb_offline):
    """The media callback on multi-hot targets: examples captioned with every label, a per-class AP table."""
    import wandb

    from tests.test_multilabel import _fit_args

    args = _fit_args(tmp_path / "poly", 1, ["--trainer.limit_train_batches=3"])
    args = [a for a in args if not a.startswith(("--trainer.logger", "--checkpoint"))]
    assert main([args[0], "--config", str(WANDB_YAML), *args[1:]]) == 0
    wandb.teardown()
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    examples = next(row["examples/spectrograms"] for row in run["history"] if "examples/spectrograms" in row)
    assert 4 <= examples["count"] <= 4 * 2
    assert any("+" in c for c in examples["captions"])  # a mixture, captioned with all its labels
    (table,) = (run_dir / "files" / "media" / "table" / "test").glob("per_class_*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert [r[0] for r in rows] == ["tone", "chirp_up", "chirp_down", "noise_band"]
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    for name, ap in rows:
        if ap is not None:
            assert ap == pytest.approx(metrics[f"test/ap_class/{name}"])


def test_offline_fit_on_stored_spectrograms_logs_them_as_images(tiny_root, tiny_args, tmp_path, wandb_offline):
    """``data.precompute_frontend: true`` (every CPU recipe): the training split holds spectrograms, not waveforms;
    the media callback draws them as they are instead of running the frontend on them."""
    import numpy as np
    import wandb
    from PIL import Image

    from audiocls.data.synthetic import SyntheticDataModule

    from .conftest import tiny_frontend_config

    args = ["fit", "--config", str(WANDB_YAML), *tiny_args, "--data.precompute_frontend=true"]
    args += ["--trainer.max_steps=1", "--trainer.limit_val_batches=1", "--test_after_fit=false"]
    assert main(args) == 0
    wandb.teardown()
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    examples = next(row["examples/spectrograms"] for row in run["history"] if "examples/spectrograms" in row)
    assert examples["count"] == 4 * 2  # two clips of each of the 4 classes

    # every logged picture is one of the training split's stored spectrograms, drawn by spectrogram_image
    dm = SyntheticDataModule(
        tiny_root, num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0,
        frontend=tiny_frontend_config(), precompute_frontend=True,
    )  # fmt: skip
    dm.setup("fit")
    stored = {spectrogram_image(spec).tobytes() for spec, _ in dm.splits["train"]}
    pictures = sorted((run_dir / "files" / "media" / "images" / "examples").glob("spectrograms_*.png"))
    assert len(pictures) == 8
    for path in pictures:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape == (3 * 32, 64, 3)  # 3 channels of 32 mels stacked, 64 frames
        assert image.tobytes() in stored, path.name
