"""Run a `mertk` command line as a user does: through the CLI's one failure handler (exit status, one line)."""
from __future__ import annotations

import sys

import pytest


def run_mertk(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """(exit status, everything printed) of `mertk ARGS`."""
    from mertk.cli.app import app
    from mertk.cli.failures import run_cli

    monkeypatch.setattr(sys, "argv", ["mertk", *map(str, args)])
    with pytest.raises(SystemExit) as stopped:
        run_cli(app)
    captured = capsys.readouterr()
    return int(stopped.value.code or 0), captured.out + captured.err
