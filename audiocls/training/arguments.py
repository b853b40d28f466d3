"""AudioCLI's argument parser: no abbreviated options, and parse errors as one line with the way out.

LightningCLI's parser (jsonargparse) accepts unique prefixes (``--trainer.max_ep 3`` for ``--trainer.max_epochs``)
and answers a typo with ~75 lines of usage that name neither the config file the key came from nor the key meant.
:class:`AudioArgumentParser` refuses prefixes and prints one line instead::

    audiocls fit: error: unknown key trainer.max_epoch in my.yaml; did you mean trainer.max_epochs? ...
    audiocls fit: error: unknown option --trainer.max_ep; did you mean --trainer.max_epochs? ...
    audiocls fit: error: no dataset given; try 'audiocls fit --config configs/demo.yaml' ...
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.pytorch.cli import LightningArgumentParser

__all__ = ["AudioArgumentParser", "explain_parse_error", "known_keys"]

#: jsonargparse's messages about a key no class accepts: (pattern, how the full dotted key is built)
_UNKNOWN_KEY = [
    (re.compile(r"Group '(?P<group>[^']+)' does not accept option '(?P<key>[^']+)'"), "{group}.{key}"),
    (re.compile(r"Subcommand '[^']+' does not accept option '(?P<key>[^']+)'"), "{key}"),
    (
        re.compile(
            r"Parser key \"(?P<group>[^\"]+)\".*?Problem with given class_path '(?P<cls>[^']+)':\s*"
            r"Option '(?P<key>[^']+)' is not accepted",
            re.S,
        ),
        "{group}.{key}",
    ),
]
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (?P<args>.*)", re.S)
_REQUIRED = re.compile(r"the following arguments are required: (?P<keys>.*)")
_CONFIG_FLAGS = ("-c", "--config")


class AudioArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` without abbreviations, whose errors are one line (:func:`explain_parse_error`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        #: the command line this parser was last given, for :meth:`error` (the root parser gets the whole line)
        self.argv: list[str] = []

    def parse_args(self, args=None, *pargs, **kwargs):
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, *pargs, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """One line naming the key, the file it came from and the closest valid key; exit 2."""
        if not self.exit_on_error or _jsonargparse_debug():
            super().error(message, ex)
        # jsonargparse sets a subcommand parser's parent_parser to the root, which parse_args gave the whole line
        argv = self.argv or getattr(getattr(self, "parent_parser", None), "argv", None) or sys.argv[1:]
        parser = _subcommand_parser(getattr(ex, "subcommand_parser", None) or self, argv)
        self.logger.error(message)
        sys.stderr.write(f"{_prog_name(parser.prog)}: error: {explain_parse_error(message, parser, argv)}\n")
        self.exit(2)


def _jsonargparse_debug() -> bool:
    """jsonargparse's documented switch ``JSONARGPARSE_DEBUG=true``: its own errors, with tracebacks."""
    return os.environ.get("JSONARGPARSE_DEBUG", "").lower() == "true"


def _prog_name(prog: str) -> str:
    """``audiocls fit`` also when Python runs the package (``__main__.py fit``) or a test drives it."""
    parts = prog.replace(" [options]", "").split()
    return " ".join(["audiocls", *parts[1:]]) if parts else "audiocls"


def _subcommand_parser(parser, argv: list[str]):
    """The parser of the subcommand named in ``argv`` (fit/validate/test), or ``parser`` itself."""
    # private, no public accessor: jsonargparse keeps the subcommand parsers only in its _ActionSubCommands
    actions = getattr(parser, "_subcommands_action", None)
    choices = getattr(actions, "_name_parser_map", None) or {}
    for arg in argv:
        if arg in choices:
            return choices[arg]
    return parser


def explain_parse_error(message: str, parser, argv: list[str]) -> str:
    """jsonargparse's ``message`` as one line: the unknown key or option, where it came from, the closest valid one.

    Args:
        message: the text jsonargparse passes to ``error()``.
        parser: the subcommand's parser (its options are the valid keys).
        argv: the command line, to find the config files (``--config F``, ``--model F``).
    """
    words = parser.prog.replace(" [options]", "").split()
    subcommand = words[-1] if len(words) > 1 else "fit"
    if _REQUIRED.search(message) and _no_config(argv):
        return (
            f"no --config and no --data given; try 'audiocls {subcommand} --config configs/demo.yaml' "
            "(the built-in synthetic set, from the audiocls checkout), or pass your own --config"
        )
    for pattern, template in _UNKNOWN_KEY:
        found = pattern.search(message)
        if not found:
            continue
        key = template.format(**found.groupdict())
        valid = known_keys(parser, found.groupdict().get("cls"), group=found.groupdict().get("group"))
        source = config_file_with(key, argv)
        where = f" in {source}" if source else f" (--{key} on the command line)"
        return f"unknown key {key}{where}{_did_you_mean(key, valid, '')}; {_tip(subcommand)}"
    found = _UNRECOGNIZED.search(message)
    if found:
        flags = [a.split("=", 1)[0] for a in found["args"].split() if a.startswith("--")]
        if flags:
            valid = known_keys(parser)
            flag = flags[0]
            more = f" (and {len(flags) - 1} more)" if len(flags) > 1 else ""
            return f"unknown option {flag}{more}{_did_you_mean(flag[2:], valid, '--')}; {_tip(subcommand)}"
    first = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return f"{first}; {_tip(subcommand)}"


def _tip(subcommand: str) -> str:
    return f"'audiocls {subcommand} --help' lists every option"


def _did_you_mean(key: str, valid: list[str], prefix: str) -> str:
    # an abbreviation: the shortest key it starts (what argparse would have expanded it to), else the closest key
    close = sorted((k for k in valid if k.startswith(key)), key=len)[:1]
    close = close or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _no_config(argv: list[str]) -> bool:
    return not any(a in _CONFIG_FLAGS or a.startswith("--config=") or a.startswith("--data") for a in argv)


def known_keys(parser, class_path: str | None = None, *, group: str | None = None) -> list[str]:
    """The dotted keys ``parser`` accepts (``trainer.max_epochs``), or ``group.<init arg>`` of ``class_path``."""
    # argparse's _actions: the standard library has no public list of a parser's options
    keys = [
        opt[2:]
        for action in getattr(parser, "_actions", [])
        for opt in action.option_strings
        if opt.startswith("--") and opt not in ("--help", "--print_config", "--config")
    ]
    if class_path and group:
        try:
            module, _, name = class_path.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            from jsonargparse import ArgumentParser

            sub = ArgumentParser(exit_on_error=False)
            sub.add_class_arguments(cls, group)
            # argparse's _actions again, for the same reason
            keys += [opt[2:] for a in sub._actions for opt in a.option_strings if opt.startswith(f"--{group}.")]
        except Exception:  # noqa: BLE001 - a suggestion is a courtesy; never hide the error behind another
            pass
    return sorted(set(keys))


def _config_files(argv: list[str]) -> list[tuple[str, Path]]:
    """(key prefix, file) of every config file on the command line, in order: ``--config F`` and ``--model F``."""
    found = []
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if not flag.startswith("-") or flag == "--print_config":
            continue
        if not value and i + 1 < len(argv):
            value = argv[i + 1]
        if not value or value.startswith("-"):
            continue
        path = Path(value).expanduser()
        if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        found.append(("" if flag in _CONFIG_FLAGS else flag.lstrip("-"), path))
    return found


def _flat_keys(obj, prefix: str = "") -> set[str]:
    """Dotted keys of a loaded YAML mapping, also without ``init_args`` (``data.init_args.root`` -> ``data.root``)."""
    keys = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            keys.add(key)
            keys.add(key.replace(".init_args", ""))
            keys |= _flat_keys(v, key)
    return keys


def config_file_with(key: str, argv: list[str]) -> str | None:
    """The last config file on the command line that sets ``key`` (the one that counts), or None."""
    source = None
    for prefix, path in _config_files(argv):
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if key in _flat_keys(loaded, prefix):
            source = str(path)
    return source
