"""The ``audiocls`` command: LightningCLI's fit/validate/test plus the framework's own commands.

Run ``audiocls --help``; ``audiocls fit --config configs/demo.yaml`` trains on the built-in synthetic set.
The top-level help imports nothing heavy (no torch, no Lightning): each command's module is imported only when
that command runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from audiocls.errors import AudioclsError

__all__ = ["main", "COMMANDS", "LIGHTNING_COMMANDS"]

log = logging.getLogger("audiocls")

#: LightningCLI's subcommands (run by :func:`audiocls.training.cli.run_cli`): name -> help
LIGHTNING_COMMANDS = {
    "fit": "train a model on a config (--config configs/demo.yaml), then test the final-epoch weights",
    "validate": "run the validation set through a checkpoint (--config X --ckpt_path Y)",
    "test": "test a checkpoint on the held-out fold (--config X --ckpt_path Y)",
}

#: top-level commands beyond LightningCLI's fit/validate/test: name -> (module with ``main(argv) -> int``, help);
#: the module is imported only when its command runs
COMMANDS = {
    "predict": ("audiocls.commands.predict", "top-k classes of audio files from a checkpoint (--ckpt_path X --files ...)"),
    "cv": ("audiocls.commands.cv", "cross-validate over all folds, resumable, with an honest report"),
    "ensemble": ("audiocls.commands.ensemble", "average the outputs of several cv runs per fold"),
    "explain": ("audiocls.commands.explain", "gradient saliency image of a clip from a checkpoint"),
    "export": ("audiocls.commands.export", "waveform-in ONNX / TorchScript model from a checkpoint"),
    "data": ("audiocls.commands.data", "download and verify the public datasets"),
    "weights": ("audiocls.commands.weights", "add ImageNet weights to the weights folder that model.pretrained reads; list it"),
    "embed": ("audiocls.commands.embed", "pooled penultimate features of audio files from a checkpoint (--out emb.npy|.npz|.csv)"),
    "study": ("audiocls.commands.study", "settings x seeds x folds on Optuna, validation objective, resumable (--config configs/studies/X.yaml)"),
    "lr_find": ("audiocls.commands.lr_find", "learning-rate range test on a fit config (--config X), suggested lr and plot PNG"),
    "serve": ("audiocls.commands.serve", "a checkpoint behind an HTTP API and a web page, on LitServe (--ckpt_path X)"),
}  # fmt: skip


def command_module(name: str):
    """The module of the extra command ``name`` (a key of :data:`COMMANDS`), imported now."""
    return importlib.import_module(COMMANDS[name][0])


def help_text() -> str:
    """``audiocls --help``: every command, one line each."""
    rows = {**LIGHTNING_COMMANDS, **{name: desc for name, (_, desc) in COMMANDS.items()}}
    width = max(map(len, rows)) + 2
    lines = [
        "usage: audiocls COMMAND [options]     (audiocls COMMAND --help for its options)",
        "",
        "audiocls: ImageNet CNNs on mel-spectrograms, trained with Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}{desc}" for name, desc in rows.items()),
        "",
        "start with: audiocls fit --config configs/demo.yaml   (the built-in synthetic set, CPU, minutes)",
    ]
    return "\n".join(lines)


def _help_epilog() -> str:
    extra = "; ".join(f"{name}: {desc}" for name, (_, desc) in COMMANDS.items())
    return f"More commands (audiocls COMMAND --help): {extra}."


def configure_process() -> None:
    """The one place that sets process state, at the start of :func:`main` (the library itself sets none).

    Flush denormals (they slow CPU training by orders of magnitude) and log INFO lines to stderr through one handler,
    the root logger's: the ``lightning`` package logger has a console handler of its own and also passes its records
    on to the root, so with both every Lightning line was printed twice (``INFO: Seed set to 0`` and
    ``INFO lightning.fabric.utilities.seed: Seed set to 0``). Lightning's handler is removed; its lines are printed
    once, in the same format as audiocls's.
    """
    import torch

    torch.set_flush_denormal(True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # imported after the root handler exists, so lightning.pytorch and lightning.fabric pass their lines on to it
    # (without one they print them with handlers of their own); the package logger gets its console handler here
    import lightning  # noqa: F401

    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:  # a handler on the root prints what the lightning logger passes on to it
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_logger.removeHandler(handler)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``audiocls`` command; returns the exit code.

    ``audiocls``, ``audiocls -h`` and ``audiocls --help`` print :func:`help_text` (exit 0 for the help, 2 without a
    command) and import nothing heavy. User errors (:class:`~audiocls.errors.AudioclsError`) print one line and exit
    with 2; set ``AUDIOCLS_DEBUG=1`` to see their traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text())
        return 0 if argv else 2
    configure_process()
    from audiocls.training.console import quiet_third_party

    try:
        with quiet_third_party():
            if argv[0] in COMMANDS:
                return int(command_module(argv[0]).main(argv[1:]) or 0)
            from audiocls.training.cli import run_cli

            run_cli(None if args is None else argv, epilog=_help_epilog())
    except Exception as err:
        user_error = _find_user_error(err)
        if user_error is None or os.environ.get("AUDIOCLS_DEBUG"):
            raise
        print(f"audiocls: error: {user_error}", file=sys.stderr)
        return 2
    return 0


def _find_user_error(err: BaseException | None) -> AudioclsError | None:
    """The :class:`AudioclsError` behind ``err``: jsonargparse wraps errors raised while instantiating."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, AudioclsError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
