"""The one way a command beyond LightningCLI's parses its arguments.

Every extra command (``audiocls predict|explain|export|cv|ensemble|data``) builds its parser here, so they all
read alike: ``prog`` is ``audiocls NAME``, flags are spelt with underscores as LightningCLI's are (``--ckpt_path``,
``--top_k``, ``--keep_archive``), and no flag may be abbreviated (``--ckpt`` is an error, not ``--ckpt_path``); an
unknown flag's error names the closest valid one.
"""

from __future__ import annotations

import argparse
import difflib
import re

__all__ = ["CommandParser", "command_parser"]

_UNRECOGNIZED = re.compile(r"unrecognized arguments: (?P<args>.*)", re.S)


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose unknown-flag error adds the closest flag (``did you mean --ckpt_path?``)."""

    def error(self, message: str):
        found = _UNRECOGNIZED.search(message)
        flags = [a.split("=", 1)[0] for a in found["args"].split() if a.startswith("--")] if found else []
        valid = sorted(_flags(self))
        for flag in flags:
            # an abbreviation: the shortest flag it starts (what argparse used to expand it to), else the closest
            close = sorted((f for f in valid if f.startswith(flag)), key=len)[:1]
            close = close or difflib.get_close_matches(flag, valid, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]} (for {flag})?"
                break
        super().error(message)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """The ``--`` flags of ``parser`` and of its sub-commands (``data download``)."""
    flags = set()
    for action in parser._actions:
        flags.update(f for f in action.option_strings if f.startswith("--") and f != "--help")
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _flags(sub)
    return flags


def command_parser(name: str, description: str, *, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``audiocls NAME``: no abbreviated flags; add flags with underscores (``--top_k``)."""
    return CommandParser(prog=f"audiocls {name}", description=description, epilog=epilog, allow_abbrev=False)
