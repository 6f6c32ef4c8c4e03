"""Exceptions that mean "the input is wrong", not "nufm has a bug".

A :class:`UserError` says which file, option or run directory is at fault and what to do; the
``nufm`` command prints it in one or two lines and exits with status 2, without a traceback
(``--debug`` or ``NUFM_DEBUG=1`` shows it). Any other exception is a bug and keeps its
traceback. Each subclass also derives from the builtin a caller would expect (``ValueError``,
``FileNotFoundError``, ``IndexError``), so ``except ValueError`` keeps working.

This module is the bottom layer: it imports nothing from nufm.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EventIndexError", "InputError", "NotFoundError", "UserError"]


class UserError(Exception):
    """Bad input from the person running nufm; the message names it and says what to do."""


class ConfigError(UserError, ValueError):
    """An option value, a preset name or a config file is invalid."""


class InputError(UserError, ValueError):
    """An input file, data set or run directory is unusable (empty, wrong kind, corrupt)."""


class NotFoundError(UserError, FileNotFoundError):
    """A file or directory that was named does not exist, or lacks a file it must hold (a run
    directory with no checkpoint)."""


class EventIndexError(UserError, IndexError):
    """An event index (``--event``) is outside the file or the embedded events."""
