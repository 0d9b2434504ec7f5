"""Shared test helpers.

`shared_data`: the real published files, `../shared/data` beside the repository (CI has it), or
the folder named by MERTK_SHARED_DATA. A user's fresh clone has neither: tests that need them
skip, saying why.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

SHARED_DATA_CANDIDATES = tuple(
    Path(folder) for folder in (os.environ.get("MERTK_SHARED_DATA"), Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if folder
)


def shared_data_folder(name: str) -> Path | None:
    """`shared/data/<name>` if it exists beside the repository (or under MERTK_SHARED_DATA), else None."""
    for root in SHARED_DATA_CANDIDATES:
        if (root / name).is_dir():
            return root / name
    return None


def require_shared_data(name: str) -> Path:
    """`shared/data/<name>`, or skip the calling test with the reason."""
    folder = shared_data_folder(name)
    if folder is None:
        pytest.skip(f"needs the real published files in ../shared/data/{name} (absent in a fresh clone)")
    return folder


@pytest.fixture(scope="session")
def shared_data():
    """A function: shared_data("llp") -> the folder of the real LLP files, or the test skips."""
    return require_shared_data


class CliOutcome:
    """Exit status and output of a `mertk` command run in process, as `mertk` itself reports it:
    `output` is everything printed, in order; `stdout` and `stderr` each stream alone."""

    def __init__(self, exit_code: int, output: str, stdout: str = "", stderr: str = ""):
        self.exit_code, self.output, self.stdout, self.stderr = exit_code, output, stdout, stderr


class _Tee(io.StringIO):
    """A text stream that keeps what it is given and passes it on to `both` (everything printed, in order)."""

    def __init__(self, both: io.StringIO):
        super().__init__()
        self.both = both

    def write(self, text: str) -> int:
        self.both.write(text)
        return super().write(text)


def invoke_mertk(*args: str) -> CliOutcome:
    """Run `mertk ARGS` in process through the CLI's own failure handler (mertk.cli.failures.run_cli):
    the exit status and every line printed, as a user sees them."""
    import contextlib
    import sys

    from mertk.cli.app import app
    from mertk.cli.failures import run_cli

    printed, argv = io.StringIO(), sys.argv
    out, err = _Tee(printed), _Tee(printed)
    sys.argv = ["mertk", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(app)
                status = 0
            except SystemExit as stopped:
                status = int(stopped.code or 0)
    finally:
        sys.argv = argv
    return CliOutcome(status, printed.getvalue(), out.getvalue(), err.getvalue())
