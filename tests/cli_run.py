"""Run a `mertk` command line as a user does: through the CLI's one failure handler (exit status, one line)."""
from __future__ import annotations

from conftest import invoke_mertk


def run_mertk(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """(exit status, everything printed) of `mertk ARGS` (see conftest.invoke_mertk)."""
    outcome = invoke_mertk(*args)
    return outcome.exit_code, outcome.output
