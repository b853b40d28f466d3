"""The ``audiocls`` command: LightningCLI's fit/validate/test plus the framework's own commands.

Run ``audiocls --help``; ``audiocls fit --config configs/demo.yaml`` trains on the built-in synthetic set.
"""

from __future__ import annotations

import logging
import os
import sys

import torch

from audiocls.commands import cv, data, embed, ensemble, explain, export, lr_find, predict
from audiocls.errors import AudioclsError
from audiocls.training.cli import run_cli

__all__ = ["main", "COMMANDS"]

log = logging.getLogger("audiocls")

#: top-level commands beyond LightningCLI's fit/validate/test: name -> (module with ``main(argv) -> int``, help)
COMMANDS = {
    "predict": (predict, "top-k classes of audio files from a checkpoint (--ckpt_path X --files ...)"),
    "cv": (cv, "cross-validate over all folds, resumable, with an honest report"),
    "ensemble": (ensemble, "average the outputs of several cv runs per fold"),
    "explain": (explain, "gradient saliency image of a clip from a checkpoint"),
    "export": (export, "waveform-in ONNX / TorchScript model from a checkpoint"),
    "data": (data, "download and verify the public datasets"),
    "embed": (embed, "pooled penultimate features of audio files from a checkpoint (--out emb.npy|.npz|.csv)"),
    "lr_find": (lr_find, "learning-rate range test on a fit config (--config X), suggested lr and plot PNG"),
}


def _help_epilog() -> str:
    extra = "; ".join(f"{name}: {desc}" for name, (_, desc) in COMMANDS.items())
    return f"More commands (audiocls COMMAND --help): {extra}."


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``audiocls`` command; returns the exit code.

    User errors (:class:`~audiocls.errors.AudioclsError`) print one line and exit with 2; set
    ``AUDIOCLS_DEBUG=1`` to see their traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    torch.set_flush_denormal(True)  # denormals slow CPU training by orders of magnitude
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] in COMMANDS:
            return int(COMMANDS[argv[0]][0].main(argv[1:]) or 0)
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
