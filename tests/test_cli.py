"""The ``audiocls`` command driven in-process: fit, test, every shipped config, and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiocls.cli import main

#: every fit config (study files, configs/studies/, are checked by tests/test_study.py)
CONFIGS = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml") if p.parent.name != "studies"
)


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "cv", "ensemble", "explain", "export", "data"):
        assert name in out


def test_every_command_parses_alike(capsys):
    """One parser factory: ``prog`` is ``audiocls NAME``, underscore flags only, no abbreviations."""
    from audiocls.cli import COMMANDS, command_module

    for name in COMMANDS:
        parser = command_module(name).build_parser()
        assert parser.prog == f"audiocls {name}" and parser.allow_abbrev is False
        parsers = [parser, *(p for a in parser._subparsers._actions if a.choices for p in a.choices.values())] if (
            parser._subparsers
        ) else [parser]  # fmt: skip
        flags = [f for p in parsers for a in p._actions for f in a.option_strings if f.startswith("--")]
        assert flags and all("-" not in f[2:] for f in flags), (name, flags)
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--ckpt=x.ckpt", "--files", "a.wav"])  # an abbreviation of --ckpt_path
    assert exc.value.code == 2 and "--ckpt" in capsys.readouterr().err


def test_lightning_predict_is_not_a_subcommand(capsys):
    """``audiocls predict`` has one meaning (the file command); fit/validate/test stay LightningCLI's."""
    from audiocls.training.cli import AudioCLI

    assert sorted(AudioCLI.subcommands()) == ["fit", "test", "validate"]
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--files" in capsys.readouterr().out


def test_resolve_config_is_what_print_config_prints(tiny_args, capsys):
    """cv's config comes from AudioCLI's own parser, without instantiating anything, and equals --print_config."""
    import yaml

    from audiocls.training.cli import build_datamodule, resolve_config

    cfg = resolve_config([*tiny_args, "--trainer.max_epochs=3"])
    with pytest.raises(SystemExit):
        main(["fit", *tiny_args, "--trainer.max_epochs=3", "--print_config"])
    assert cfg == yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["max_epochs"] == 3 and cfg["seed_everything"] == 0
    assert build_datamodule(cfg).num_classes == 4


def test_fit_fast_dev_run(tiny_args):
    assert main(["fit", *tiny_args, "--trainer.fast_dev_run=true"]) == 0


def _accuracy_of(ckpt: Path, args: list[str], split: str = "test") -> float:
    """sklearn's accuracy of the checkpoint's model on a split (the held-out fold) of ``args``, outside Lightning."""
    import torch
    from sklearn.metrics import accuracy_score

    from audiocls.training.checkpoints import load_checkpoint
    from audiocls.training.cli import build_datamodule, resolve_config

    dm = build_datamodule(resolve_config(args))
    dm.setup("fit")
    test = dm.splits[split]
    waves = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        pred = load_checkpoint(ckpt).wave_classifier()(waves).argmax(1)
    return accuracy_score(test.labels, pred.numpy())


def test_fit_then_test_writes_metrics_and_checkpoint(tiny_args, tmp_path, capsys):
    assert main(["fit", *tiny_args, "--trainer.max_epochs=1"]) == 0
    run = tmp_path / "runs" / "audiocls" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(_accuracy_of(run / "checkpoints" / "last.ckpt", tiny_args))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()
    assert "run written to" in capsys.readouterr().out

    # the LightningCLI test subcommand rebuilds the model from the checkpoint's hyperparameters
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["test", *tiny_args, f"--ckpt_path={ckpt}"]) == 0
    again = json.loads(next((tmp_path / "runs" / "audiocls").glob("version_1/metrics.json")).read_text())
    assert again["test/acc"] == pytest.approx(metrics["test/acc"])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_config_parses(config, capsys):
    """Top-level configs alone; group configs the way their headers say: model/ as --model, recipes/ after a dataset
    config, others stacked."""
    base = str(config.parents[1] / ("esc50.yaml" if config.parent.name == "recipes" else "demo.yaml"))
    if config.parent.name == "configs":
        args = ["--config", str(config)]
    elif config.parent.name == "model":
        args = ["--config", base, "--model", str(config)]
    else:
        args = ["--config", base, "--config", str(config)]
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args, "--print_config"])
    assert exc.value.code == 0
    assert "model:" in capsys.readouterr().out


def test_unknown_config_key_is_refused(tiny_args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_args, "--model.bakbone=resnet18"])
    assert exc.value.code != 0
    assert "bakbone" in capsys.readouterr().err


def test_missing_data_root_is_one_line(tmp_path, capsys):
    code = main(["fit", "--data=audiocls.data.esc50.ESC50DataModule", f"--data.root={tmp_path / 'nope'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "meta/esc50.csv" in err and "audiocls data download esc50" in err
    assert "Traceback" not in err


def test_unknown_backbone_suggests_names(tiny_args, capsys):
    code = main(["fit", *tiny_args, "--model.backbone=resnet1800"])
    err = capsys.readouterr().err
    assert code == 2
    assert "resnet1800" in err and "did you mean" in err
