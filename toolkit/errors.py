"""The two kinds of failure a user sees, shared by every command.

An `InputError` is something the user can fix in what they gave (a path, an option, a file's
content): the CLI prints its one line and exits with status 2. A `RunError` is a run that could not
finish although its inputs were acceptable (a disk that refuses a write, a worker that died): status 1.
Modules raise their own subclasses so that a caller can still tell them apart.
"""
from __future__ import annotations


class MertkError(Exception):
    """Base of every error mertk raises on purpose; its message is one line naming file and row."""

    exit_status = 1


class InputError(MertkError, ValueError):
    """Bad input: a path, an option value or a file that is not what was expected."""

    exit_status = 2


class RunError(MertkError, RuntimeError):
    """The run as a whole could not finish."""

    exit_status = 1


class ResumeMismatchError(InputError):
    """The output directory holds a run made with other parameters."""
