"""User-facing errors: the CLI prints these as one line, without a traceback."""

from __future__ import annotations

__all__ = ["AudioclsError", "ConfigError", "DataError", "AudioLoadError", "AudioTooLongError"]


class AudioclsError(Exception):
    """Base of every error caused by the user's input (a path, a value, a file), not by a bug."""


class ConfigError(AudioclsError, ValueError):
    """A setting has a value that cannot work; the message names the value and the fix."""


class DataError(AudioclsError, FileNotFoundError):
    """A dataset root or its metadata is missing or not in the expected layout."""


class AudioLoadError(AudioclsError, OSError):
    """One audio file could not be decoded; the message names the file."""


class AudioTooLongError(AudioLoadError):
    """Audio longer than a limit the user set (``audiocls serve --max_seconds``); the message names both lengths."""
