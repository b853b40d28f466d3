"""``audiocls lr_find --config configs/esc10.yaml``: Lightning's learning-rate range test on a config's model and data.

The model and data are built from the config exactly as ``audiocls fit`` would build them (same parser, links
and overrides); Lightning's ``Tuner.lr_find`` then trains for ``--num_training`` steps with the learning rate
rising exponentially from ``--min_lr`` to ``--max_lr`` on the injected optimizer (through
``AudioClassifier.lr``), prints the suggested rate and saves the loss-vs-lr plot as a PNG. Nothing is trained
for real: the weights are restored afterwards and no run folder or checkpoint is kept.

Arguments other than the ones below go to the config parser, as for ``fit``
(``--config X --data.root Y --model.optimizer.weight_decay 0.01``).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import sys
from pathlib import Path

from audiocls.commands.parser import command_parser
from audiocls.errors import ConfigError
from audiocls.files import atomic_write_bytes, check_output_file

__all__ = ["find_lr", "main"]

log = logging.getLogger(__name__)


def build_parser():
    p = command_parser(
        "lr_find",
        "Learning-rate range test (Lightning's Tuner) on the model and data of a fit config.",
        epilog="Other arguments are fit's: --config FILE and overrides such as --data.root DIR.",
    )
    p.add_argument("--min_lr", type=float, default=1e-7, help="first learning rate tried (default 1e-7)")
    p.add_argument("--max_lr", type=float, default=1.0, help="last learning rate tried (default 1)")
    p.add_argument("--num_training", type=int, default=100, help="training steps of the test (default 100)")
    p.add_argument("--out", type=Path, default=Path("lr_find.png"), help="the plot (default lr_find.png)")
    return p


def find_lr(fit_args: list[str], *, min_lr: float, max_lr: float, num_training: int):
    """Run Lightning's LR finder on the model and datamodule of ``audiocls fit fit_args``; the finder result.

    The finder draws its own tqdm bar (not the trainer's progress bar); off a terminal (CI, ``nohup``) that bar
    is disabled, since its carriage-return redraws fill a log with one unreadable line, and one line is printed
    at the start instead.
    """
    from lightning.pytorch.tuner import Tuner
    from lightning.pytorch.tuner import lr_finder as lightning_lr_finder

    from audiocls.training.cli import run_cli

    cli = run_cli([*fit_args, "--trainer.enable_progress_bar=false"], run=False)
    datamodule = cli.datamodule
    bar = lightning_lr_finder.tqdm
    interactive = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not interactive:
        print(f"lr range test: {num_training} steps, lr {min_lr:g} -> {max_lr:g}", file=sys.stderr, flush=True)
    try:
        # private, no public hook: Lightning 2.6's _lr_find builds its tqdm bar with progress_bar_refresh_rate=1
        # hard-coded and tqdm reads TQDM_DISABLE only at import; the module's tqdm is swapped for this call only
        lightning_lr_finder.tqdm = functools.partial(bar, disable=not interactive)
        return Tuner(cli.trainer).lr_find(
            cli.model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training, attr_name="lr"
        )
    finally:
        lightning_lr_finder.tqdm = bar


def main(argv: list[str]) -> int:
    """``audiocls lr_find --config X [--out lr.png] [fit overrides]``; prints the suggested learning rate."""
    args, fit_args = build_parser().parse_known_args(argv)
    if not 0 < args.min_lr < args.max_lr or not math.isfinite(args.max_lr):
        raise ConfigError(f"--min_lr={args.min_lr} and --max_lr={args.max_lr} must satisfy 0 < min_lr < max_lr")
    if args.num_training < 2:
        raise ConfigError(f"--num_training={args.num_training} must be at least 2 steps")
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out={args.out}: the plot is a PNG, name it *.png")
    out = check_output_file(args.out)  # before any training step
    finder = find_lr(fit_args, min_lr=args.min_lr, max_lr=args.max_lr, num_training=args.num_training)
    if finder is None:  # pragma: no cover - Lightning returns None only under fast_dev_run
        raise ConfigError("the LR finder did not run (trainer.fast_dev_run is set): unset it")
    suggestion = finder.suggestion()

    from audiocls.training.curves import new_figure

    fig = new_figure()
    finder.plot(suggest=suggestion is not None, show=False, ax=fig.subplots())
    fig.axes[0].set_title(f"suggested lr: {suggestion:.3g}" if suggestion is not None else "no suggestion")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}", file=sys.stderr)
    if suggestion is None:
        print("no suggestion: the loss did not fall over the range; widen --min_lr/--max_lr or raise --num_training")
        return 1
    print(f"suggested lr: {suggestion:.6g}  (use it with --model.optimizer.lr={suggestion:.3g})")
    return 0
