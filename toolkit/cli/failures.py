"""Every failure of a `mertk` command is one line on stderr and an exit status, never a traceback.

Exit status 2: bad input (mertk's InputError and the ValueError family its readers raise, a missing
file, a usage error); 1: a run that could not finish (a disk that refuses a write, a worker that
died, anything unexpected); 130: interrupted (the run resumes where it stopped). `mertk --debug ...`
prints the traceback after the line.
"""
from __future__ import annotations

import sys
import traceback

import typer
import typer.rich_utils

from mertk.console import console
from mertk.errors import MertkError

_debug = False


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


def describe(error: BaseException) -> tuple[str, int]:
    """The one line a user sees for `error`, and the exit status."""
    if isinstance(error, MertkError):
        return str(error), error.exit_status
    if isinstance(error, PermissionError):
        return f"{error.filename or error}: permission denied (is the output folder writable?)", 1
    if isinstance(error, FileNotFoundError):
        return f"{error.filename or error}: no such file or folder", 2
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}", 1
    if isinstance(error, KeyError):  # str() of a KeyError is the repr of its key: show the key's own text
        return str(error.args[0]) if error.args else "missing key", 2
    if isinstance(error, (ValueError, LookupError)):
        return str(error), 2
    return f"unexpected {type(error).__name__}: {error} (run again with `mertk --debug ...` for the traceback)", 1


def report_failure(error: BaseException) -> int:
    message, status = describe(error)
    message = " ".join(str(message).split())  # one line, whatever the error carried
    console.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    if _debug:
        traceback.print_exception(error, file=sys.stderr)
    return status


def run_cli(app: typer.Typer) -> None:
    """Run the Typer app; turn any exception that escapes a command into one line and a status."""
    if not sys.stdout.isatty():
        # help pages piped to a file or a pager keep whole option names and descriptions
        typer.rich_utils.MAX_WIDTH = max(typer.rich_utils.MAX_WIDTH or 0, 120)
    try:
        status = app(standalone_mode=False)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command again to resume.")
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the single place where failures become a line
        if _is_exit(error):
            sys.exit(error.exit_code)
        if _is_abort(error):
            console.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command again to resume.")
            sys.exit(130)
        if _is_usage_error(error):
            sys.exit(_report_usage(error))
        sys.exit(report_failure(error))
    sys.exit(status if isinstance(status, int) else 0)


def _report_usage(error: Exception) -> int:
    """A bad command line (unknown option, value out of range, missing argument) as one line."""
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "mertk"
    message = " ".join(error.format_message().split())
    console.print(f"[red]error:[/red] {command}: {message} (see `{command} --help`)", highlight=False, soft_wrap=True)
    return error.exit_code


# Typer vendors its own copy of click in recent releases; the command-line exceptions are told
# apart by what they are (click's or typer's Exit / Abort / ClickException), by name.
def _names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def _is_exit(error: BaseException) -> bool:
    return "Exit" in _names(error) and hasattr(error, "exit_code")


def _is_abort(error: BaseException) -> bool:
    return "Abort" in _names(error)


def _is_usage_error(error: BaseException) -> bool:
    return "ClickException" in _names(error) and hasattr(error, "show")
