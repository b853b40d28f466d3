"""The one way a command beyond LightningCLI's parses its arguments.

Every extra command (``audiocls predict|explain|export|cv|ensemble|data``) builds its parser here, so they all
read alike: ``prog`` is ``audiocls NAME``, flags are spelt with underscores as LightningCLI's are (``--ckpt_path``,
``--top_k``, ``--keep_archive``), and no flag may be abbreviated (``--ckpt`` is an error, not ``--ckpt_path``).
"""

from __future__ import annotations

import argparse

__all__ = ["command_parser"]


def command_parser(name: str, description: str, *, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``audiocls NAME``: no abbreviated flags; add flags with underscores (``--top_k``)."""
    return argparse.ArgumentParser(prog=f"audiocls {name}", description=description, epilog=epilog, allow_abbrev=False)
