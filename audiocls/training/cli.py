"""AudioCLI: LightningCLI with audiocls's links (data -> model), checkpoint callback, checks and final test.

The command table and ``main()`` live in :mod:`audiocls.cli`; this module is what every fit, validate and test
runs through, and what ``audiocls cv`` uses to resolve a config (:func:`resolve_config`, :func:`build_datamodule`).
``audiocls predict`` is the file command (:mod:`audiocls.commands.predict`), so LightningCLI's predict subcommand
is left out.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import yaml
from jsonargparse import Namespace, lazy_instance
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from audiocls.data.base import AudioDataModule
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_text
from audiocls.models.classifier import AudioClassifier
from audiocls.models.task import DEFAULT_TASK, TASKS, get_task
from audiocls.training import preflight, run_folder, tracking
from audiocls.training.arguments import AudioArgumentParser
from audiocls.training.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint,
    read_lightning_checkpoint,
    resolve_last_checkpoint,
)
from audiocls.training.console import AudioProgressBar, effective_batch_line, quiet_third_party, summary_lines
from audiocls.training.curves import plot_confusion, plot_curves
from audiocls.training.record import RandomStateCallback, RunInfoCallback, discard_failed_run_dir

__all__ = [
    "AudioCLI",
    "LastEveryEpochCheckpoint",
    "RUNS",
    "SAVE_DIR_FOLLOWS",
    "run_cli",
    "resolve_config",
    "build_datamodule",
]

log = logging.getLogger(__name__)

#: the default ``trainer.default_root_dir``: every run lives under it unless the user says otherwise
RUNS = "runs"
#: the default of the logger's ``save_dir``: replaced by ``trainer.default_root_dir`` before instantiation, so
#: ``--trainer.default_root_dir X`` moves the whole run; an explicit ``save_dir`` still wins for the logs
SAVE_DIR_FOLLOWS = "${trainer.default_root_dir}"


def resolve_save_dir(config) -> str | None:
    """Point every logger whose ``save_dir`` is :data:`SAVE_DIR_FOLLOWS` (or unset) at ``trainer.default_root_dir``.

    Args:
        config: the parsed config of one subcommand (a jsonargparse ``Namespace``).

    Returns:
        the folder the first logger writes under, or ``trainer.default_root_dir`` without a logger.
    """
    root = config.get("trainer.default_root_dir") or RUNS
    config["trainer.default_root_dir"] = root
    loggers = config.get("trainer.logger")
    first = None
    for item in loggers if isinstance(loggers, list) else [loggers]:
        args = item.get("init_args") if isinstance(item, Namespace) else None
        if not isinstance(args, Namespace):
            continue
        if args.get("save_dir") in (None, SAVE_DIR_FOLLOWS):
            args["save_dir"] = root
        first = first or str(args["save_dir"])
    return first or str(root)


class LastEveryEpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is the state after every epoch, as resuming and users expect.

    Lightning 2.6 refreshes ``last.ckpt`` only when a top-k file is saved in the same step, so with
    ``monitor: val/acc`` an epoch that does not improve validation accuracy leaves ``last.ckpt`` at an older epoch:
    ``--ckpt_path last`` would resume from there and ``test --ckpt_path .../last.ckpt`` would test old weights.
    Here ``last.ckpt`` is (re)written at the end of every epoch that did not write it already.

    Without a validation split (the datamodule's ``has_validation`` is False after its setup, e.g.
    ``data.val_fraction: 0``) it monitors nothing and keeps ``last.ckpt`` only, instead of warning every epoch
    that the monitored key is missing and writing a ``best.ckpt`` that means nothing.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # Lightning calls the datamodule's setup before the callbacks'
        if stage == "fit" and getattr(trainer.datamodule, "has_validation", None) is False and self.monitor:
            self.monitor, self.save_top_k = None, 0

    # private, no public hook: ModelCheckpoint 2.6 has no public way to ask whether this step was saved or to
    # write last.ckpt alone (save_last=True/"link" both follow a top-k save); the members used are the ones its own
    # on_validation_end/on_train_epoch_end use (_should_skip_saving_checkpoint, _should_save_on_train_epoch_end,
    # _last_global_step_saved, _save_last_checkpoint, _monitor_candidates), so last.ckpt is written as Lightning does
    def _refresh_last(self, trainer) -> None:
        if self.save_last is True and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)


def monitor_follows_task(trainer: Trainer, model) -> None:
    """Point checkpoint and early-stopping callbacks that monitor another task's figure (the presets' ``val/acc``
    under a multi-label model) at the model's task's monitor, so one callback preset serves every task."""
    task = get_task(getattr(model, "task", DEFAULT_TASK))
    others = {t.monitor for t in TASKS.values()} - {task.monitor}
    for callback in [*trainer.checkpoint_callbacks, *trainer.early_stopping_callbacks]:
        if callback.monitor not in others:
            continue
        name = type(callback).__name__
        if callback.mode != task.mode:
            raise ConfigError(
                f"{name} monitors {callback.monitor} with mode={callback.mode}; a {task.name} model is judged by "
                f"{task.monitor} with mode={task.mode}: set the callback's monitor and mode"
            )
        log.info("%s monitor %s -> %s for a %s model", name, callback.monitor, task.monitor, task.name)
        callback.monitor = task.monitor


class AudioCLI(LightningCLI):
    """LightningCLI with the datamodule -> model links, a checkpoint callback and a final test.

    Subcommands: fit, validate, test (``audiocls predict`` scores audio files, see :mod:`audiocls.commands.predict`).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def __init__(self, *args, **kwargs) -> None:
        failed = True
        self._new_run_dir: Path | None = None  # set by _preflight when this run is about to create its folder
        try:
            super().__init__(*args, **kwargs)
            failed = False
        except BaseException:
            # a run that fails leaves no version_N folder it created and left empty (only the config,
            # hyperparameters and run record: :func:`~audiocls.training.record.discard_failed_run_dir`)
            run = self._new_run_dir
            if run is not None and discard_failed_run_dir(run):
                log.info("%s failed: removed %s, which it had created and left without results", self.subcommand, run)
            raise
        finally:  # W&B (audiocls.training.tracking): end the run, also after an error, so the next run starts its own
            hint = tracking.finish_wandb(exit_code=1 if failed else None) if kwargs.get("run", True) else None
            if hint:
                print(hint)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, then read ``--ckpt_path`` safely: Lightning's own read right after (for the hyperparameters) would
        end a damaged file in torch's traceback; this gives one line naming the file (:func:`read_lightning_checkpoint`)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            read_lightning_checkpoint(ckpt_path)

    def _setting(self, config: Namespace, key: str, default=None):
        """``key`` of the running subcommand's part of ``config`` (of the whole config without a subcommand)."""
        return config.get(str(self.subcommand), config).get(key, default)

    def before_instantiate_classes(self) -> None:
        """One run folder (:func:`resolve_save_dir`); W&B: offline without a key, tags and name from the config,
        LR monitor and media callbacks."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        resolve_save_dir(config)
        if tracking.configure_wandb(config):
            extra = tracking.extra_callbacks(config.get("trainer.callbacks"))
            defaults = self.trainer_defaults.get("callbacks") or []
            defaults = defaults if isinstance(defaults, list) else [defaults]
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [*defaults, *extra]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")
        parser.add_lightning_class_args(LastEveryEpochCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "trainer.default_root_dir": RUNS,
                "trainer.logger": lazy_instance(CSVLogger, save_dir=SAVE_DIR_FOLLOWS, name="audiocls"),
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test the final-epoch weights on the held-out fold (the honest figure)",
        )

    # --- reliability (docs/RELIABILITY.md): crash-safe checkpoints, exact resume, run record, early checks ------
    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The trainer, with atomic checkpoint files, random states in checkpoints and ``runinfo.json``, and
        :class:`~audiocls.training.console.AudioProgressBar` in place of the bar Lightning adds by default (a bar
        the config names is kept; ``trainer.enable_progress_bar: false`` has none)."""
        trainer = super().instantiate_trainer(**kwargs)
        bar = trainer.progress_bar_callback
        configured = (self._setting(self.config_init, "trainer") or {}).get("callbacks") or []
        if bar is not None and not any(c is bar for c in configured):  # Lightning's default bar
            trainer.callbacks[trainer.callbacks.index(bar)] = AudioProgressBar()
        monitor_follows_task(trainer, self.model)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a CheckpointIO the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        seed = self._setting(self.config, "seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        deterministic = (self._setting(self.config, "trainer") or {}).get("deterministic")
        self._runinfo = RunInfoCallback(seed, self.subcommand, deterministic=deterministic)
        trainer.callbacks.extend([RandomStateCallback(), self._runinfo])
        return trainer

    def _preflight(self, subcommand: str) -> None:
        """Resolve ``--ckpt_path last`` and fail before the first step on a bad folder, root or checkpoint."""
        logger = self.trainer.logger
        if self.trainer.is_global_zero and isinstance(logger, CSVLogger | TensorBoardLogger):
            run = Path(logger.log_dir)
            self._new_run_dir = None if run.exists() else run  # removed again if the run fails (see __init__)
        config = self.config_init[subcommand]
        ckpt = resolve_last_checkpoint(self.trainer, config.get("ckpt_path"), resume=subcommand == "fit")
        config["ckpt_path"] = ckpt
        self._runinfo.ckpt_path = ckpt
        preflight.check_data_root(self.datamodule)
        logger = self.trainer.logger
        out = getattr(logger, "save_dir", None) if logger else None
        need = preflight.estimate_checkpoint_bytes(self.model) if subcommand == "fit" else 0
        preflight.check_output_dir(out or self.trainer.default_root_dir, need_bytes=need)
        dirpath = getattr(self.trainer.checkpoint_callback, "dirpath", None)
        if subcommand == "fit" and dirpath:
            preflight.check_output_dir(dirpath, need_bytes=need, setting="checkpoint.dirpath")
        if ckpt not in (None, "last", "best"):
            check_checkpoint(ckpt, self.model, self.datamodule)
        if self.trainer.is_global_zero:
            log.info("%s: writing the run to %s", subcommand, run_folder.run_dir(self.trainer).resolve())

    def before_fit(self) -> None:
        self._preflight("fit")
        line = effective_batch_line(self.trainer, getattr(self.datamodule, "batch_size", None))
        if line and self.trainer.is_global_zero:
            log.info(line)

    def before_validate(self) -> None:
        self._preflight("validate")

    def before_test(self) -> None:
        self._preflight("test")

    def after_fit(self) -> None:
        self._plot_curves()
        if self.trainer.interrupted or not self._setting(self.config, "test_after_fit", False):
            return
        if self.trainer.fast_dev_run:
            return
        self.trainer.test(self.model, datamodule=self.datamodule)
        self._report("final-epoch weights")

    def _plot_curves(self) -> None:
        """``curves.png`` (train loss, the task's monitor per epoch) beside the CSV logger's ``metrics.csv``, on rank 0."""
        logger = self.trainer.logger
        if not self.trainer.is_global_zero or not isinstance(logger, CSVLogger):
            return
        logger.save()  # metrics.csv complete up to now
        metrics_csv = Path(logger.log_dir) / "metrics.csv"
        if metrics_csv.is_file():
            out, task = metrics_csv.with_name("curves.png"), self.model.task
            written = plot_curves(metrics_csv, out, task=task, title=str(logger.log_dir))
            if written:
                log.info("training curves written to %s", written)

    def after_test(self) -> None:
        self._report(str(getattr(self._runinfo, "ckpt_path", None) or "weights as configured"))

    def _report(self, weights: str) -> None:
        """Write ``metrics.json`` beside the logs and print a one-screen summary: test figures, run, checkpoints."""
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        if not self.trainer.is_global_zero or not metrics:
            return
        run_dir = run_folder.run_dir(self.trainer).resolve()  # no collective call: only rank 0 gets here
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        self._plot_confusion(run_dir, weights)
        print("\n" + "\n".join(summary_lines(self.trainer, metrics, run_dir, weights=weights)))

    def _plot_confusion(self, run_dir: Path, weights: str) -> None:
        """``confusion.png`` of the test set (single-label models: rows true class, columns predicted)."""
        cm = getattr(self.model, "test_confusion", None)
        if cm is None:
            return
        try:
            plot_confusion(
                cm.cpu().numpy(), list(self.model.class_names), run_dir / "confusion.png", f"test: {weights}"
            )
        except OSError as err:  # the figures are in metrics.json already; a failed plot must not fail the run
            log.warning("confusion.png not written to %s: %s", run_dir, err)


def run_cli(
    args: list[str] | None = None, *, epilog: str | None = None, cli_class: type[AudioCLI] = AudioCLI, **kwargs
) -> AudioCLI:
    """Build and run :class:`AudioCLI` (or ``cli_class``) on ``args`` (any datamodule subclass, the AudioClassifier)."""
    with quiet_third_party():
        return cli_class(
            AudioClassifier,
            AudioDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_callback=run_folder.LoggedSaveConfigCallback,
            save_config_kwargs={"overwrite": True},
            parser_class=AudioArgumentParser,  # no abbreviated options; parse errors as one line with the closest key
            parser_kwargs={
                "description": "audiocls: ImageNet CNNs on mel-spectrograms, trained with Lightning.",
                "epilog": epilog,
            },
            args=args,
            **kwargs,
        )


class _ParseOnly(AudioCLI):
    """AudioCLI that only parses: the parsed config is kept in :attr:`parsed`; no seed is drawn, nothing is
    instantiated, nothing runs.

    LightningCLI has no parse-only switch (``run=False`` still seeds and instantiates), so after parsing
    :attr:`config` is left with no subcommand and ``seed_everything: false``, on which the rest of
    ``LightningCLI.__init__`` reads no checkpoint, draws no seed and runs nothing, and the two public
    instantiation hooks do nothing.
    """

    parsed: Namespace

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        LightningCLI.parse_arguments(self, parser, args)  # not AudioCLI's: no checkpoint is read
        self.parsed, self.config = self.config, Namespace(subcommand=None, seed_everything=False)

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def resolve_config(args: list[str], subcommand: str = "fit") -> dict:
    """The full config ``audiocls <subcommand> args`` would run with, as a plain dict; nothing is instantiated.

    Parsed by AudioCLI's own parser (configs, overrides, defaults and validation as for the real command), and
    dumped as ``--print_config`` would print it, so the result is a valid ``--config`` file for that subcommand.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        cli = run_cli([subcommand, *args], cli_class=_ParseOnly, load_from_checkpoint_support=False)
    return yaml.safe_load(cli.parser.dump(cli.parsed, skip_unset=False))[subcommand]


def build_datamodule(cfg: dict) -> AudioDataModule:
    """The datamodule of a config from :func:`resolve_config`, instantiated here (cheap: no audio is decoded)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(AudioDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": cfg["data"]})).data
