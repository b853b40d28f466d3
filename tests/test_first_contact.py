"""A user's first minutes: the help, a fit without a config, typos, no network, a relative root, a failed fit.

Each case is driven as a user types it (``main([...])`` or the command in a subprocess) and fails without its fix.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from audiocls.cli import main

REPO = Path(__file__).resolve().parents[1]

#: every command a user can type, as the README and DESIGN.md name them
EVERY_COMMAND = ["fit", "validate", "test", "predict", "cv", "ensemble", "explain", "export"]
EVERY_COMMAND += ["data", "embed", "lr_find", "serve"]
#: what the top-level help must not import (seconds of start-up each)
HEAVY = ["torch", "lightning", "jsonargparse", "timm", "torchaudio", "numpy"]

_HELP_PROBE = """
import sys
from audiocls.cli import main
code = main(sys.argv[1:])
print("IMPORTED", *[m for m in {heavy!r} if m in sys.modules])
sys.exit(code)
"""


def _top_level(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = _HELP_PROBE.format(heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["-h"], 0), ([], 2)])
def test_top_level_help_lists_every_command_and_imports_nothing_heavy(args, code):
    """``audiocls --help`` (and ``audiocls`` alone) is instant: no torch, Lightning or jsonargparse is imported."""
    done = _top_level(args)
    assert done.returncode == code, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "IMPORTED", f"the top-level help imported {lines[-1].split()[1:]}"
    for name in EVERY_COMMAND:
        rows = [line for line in lines if line.split()[:1] == [name]]
        assert len(rows) == 1 and len(rows[0].split()) > 2, (name, rows)  # one line, with what it does


def test_import_audiocls_is_light_and_its_names_still_work():
    """``import audiocls`` imports no torch; ``audiocls.AudioClassifier`` still is the class."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = "import sys, audiocls; print(*[m for m in ('torch', 'lightning') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
    import audiocls
    from audiocls.models.classifier import AudioClassifier

    assert audiocls.AudioClassifier is AudioClassifier and "AudioClassifier" in audiocls.__all__
    with pytest.raises(AttributeError):
        audiocls.NoSuchName  # noqa: B018


def test_fit_help_is_still_lightning_cli(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0 and "--trainer.max_epochs" in capsys.readouterr().out


def test_fit_without_config_suggests_the_demo_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and "--config configs/demo.yaml" in err, err


def _one_line_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1, err  # not ~75 lines of usage
    return err


def test_unknown_flag_names_the_closest_option(tiny_args, capsys):
    err = _one_line_error(["fit", *tiny_args, "--trainer.max_epochz=3"], capsys)
    assert "--trainer.max_epochz" in err and "did you mean --trainer.max_epochs?" in err


def test_abbreviated_flag_is_refused(tiny_args, capsys):
    """``--trainer.max_ep 3`` used to be expanded silently to ``--trainer.max_epochs``."""
    err = _one_line_error(["fit", *tiny_args, "--trainer.max_ep", "3", "--print_config"], capsys)
    assert "--trainer.max_ep" in err and "did you mean --trainer.max_epochs?" in err


@pytest.mark.parametrize(
    ("text", "key", "meant"),
    [
        ("trainer:\n  max_epoch: 3\n", "trainer.max_epoch", "trainer.max_epochs"),
        ("model:\n  bakbone: resnet18\n", "model.bakbone", "model.backbone"),
        ("data:\n  init_args:\n    clips_per_fld: 3\n", "data.clips_per_fld", "data.clips_per_fold"),
    ],
)
def test_unknown_config_key_names_the_file_and_the_closest_key(tiny_args, tmp_path, capsys, text, key, meant):
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    err = _one_line_error(["fit", *tiny_args, "--config", str(config)], capsys)
    assert f"unknown key {key} in {config}" in err and f"did you mean {meant}?" in err, err


def test_extra_commands_suggest_the_closest_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--ckpt_path", "x.ckpt", "--files", "a.wav", "--top", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "did you mean --top_k" in err, err


def test_pretrained_without_network_fails_fast_with_the_message(monkeypatch, tmp_path):
    """No network and no cached weights: the one-line error in seconds, not after the hub's minute of retries."""
    from huggingface_hub import constants

    from audiocls.errors import ConfigError
    from audiocls.models.backbone import build_backbone

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests run offline: here the network is just down
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []  # every host looked up on the way to a connection: each try of every HTTP client starts so
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        attempts.append((host, port))
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ConfigError, match=r"model.backbone='test_resnet.r160_in1k'.*model.weights=") as exc:
        build_backbone("test_resnet.r160_in1k", num_classes=3, pretrained=True)
    # one probe and no retries: without it, timm's download would retry the hub with back-off (for ~45 s)
    assert attempts == [("127.0.0.1", 9)], attempts
    assert "127.0.0.1:9" in str(exc.value)


def test_relative_data_root_says_the_absolute_folder(tiny_args, tiny_root, tmp_path, caplog):
    relative = os.path.relpath(tiny_root, tmp_path)  # the tests run in tmp_path
    args = [a if not a.startswith("--data.root=") else f"--data.root={relative}" for a in tiny_args]
    with caplog.at_level(logging.INFO, logger="audiocls"):
        assert main(["fit", *args, "--trainer.fast_dev_run=true"]) == 0
    notes = [r.getMessage() for r in caplog.records if "is relative to the working folder" in r.getMessage()]
    assert notes == [f"data.root={relative} is relative to the working folder: reading {Path(tiny_root).resolve()}"]


def test_absolute_data_root_gets_no_notice(tiny_root, caplog):
    from audiocls.training.preflight import check_data_root

    class _DM:
        root = Path(tiny_root).resolve()

    with caplog.at_level(logging.INFO, logger="audiocls"):
        check_data_root(_DM())
    assert not [r for r in caplog.records if "relative" in r.getMessage()]


def test_failed_fit_leaves_no_empty_run_folder(tiny_args, tmp_path, capsys):
    """An error before the first step (here: a batch larger than the training set) removes the run's new folder."""
    code = main(["fit", *tiny_args, "--data.batch_size=512"])
    assert code == 2 and "data.batch_size=512" in capsys.readouterr().err
    assert not list(tmp_path.rglob("version_*")), sorted(map(str, tmp_path.rglob("*")))


def test_failed_fit_keeps_what_the_user_needs(tmp_path):
    """Only a folder of scaffolding is removed: a checkpoint, logged metrics or a link keep it."""
    from audiocls.training.record import discard_failed_run_dir

    def make(name: str, files: dict[str, str]) -> Path:
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        for rel, text in files.items():
            (run / rel).write_text(text)
        return run

    scaffold = {"config.yaml": "a: 1\n", "hparams.yaml": "", "runinfo.json": "{}", "metrics.csv": "epoch,step\n"}
    assert discard_failed_run_dir(make("v0", scaffold)) and not (tmp_path / "v0").exists()
    for name, extra in [("v1", {"checkpoints/last.ckpt": "x"}), ("v2", {"metrics.csv": "epoch\n0\n"}),
                        ("v3", {"notes.txt": "mine"})]:  # fmt: skip
        assert not discard_failed_run_dir(make(name, {**scaffold, **extra})) and (tmp_path / name).is_dir(), name
