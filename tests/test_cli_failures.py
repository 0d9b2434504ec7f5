"""A failure is one line naming the file, whatever the path's length and whether the output is a
terminal; bad input exits 2, a run that could not finish 1; progress shows when piped."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mertk.cli.failures import describe, report_failure, set_debug
from mertk.errors import InputError, RunError

MERTK = [sys.executable, "-m", "mertk"]


def run_mertk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it with its output piped (no terminal: the case that used to wrap)."""
    return subprocess.run([*MERTK, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def long_folder(tmp_path: Path) -> Path:
    folder = tmp_path.joinpath(*(["a_rather_long_folder_name_that_pushes_the_line_past_eighty_columns"] * 3))
    folder.mkdir(parents=True)
    return folder


def test_missing_input_is_one_unwrapped_line_with_the_whole_path(tmp_path):
    missing = long_folder(tmp_path) / "no_such_unimer_output"
    result = run_mertk("validate", str(missing))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and "Traceback" not in result.stderr


def test_a_folder_that_is_not_an_output_is_refused_in_one_line(tmp_path):
    folder = long_folder(tmp_path)
    result = run_mertk("train", "mer", str(folder), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "_manifest.json" in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("no-such-command",), "No such command"),
        (("migrate-labels", "--llp", ".", "--out", "o", "--workers", "0"), "--workers"),
        (("validate",), "Missing argument"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args, words):
    result = run_mertk(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert words in lines[0] and "--help" in lines[0] and "Traceback" not in result.stderr


def test_debug_adds_the_traceback_to_the_line(capsys):
    def fail():
        raise InputError("sheet.xlsx row 3: onset 'x' is not a frame number\n(second line of detail)")

    for debug in (False, True):
        set_debug(debug)
        try:
            fail()
        except InputError as error:
            status = report_failure(error)
        set_debug(False)
        err = capsys.readouterr().err
        assert status == 2
        assert err.splitlines()[0] == "error: sheet.xlsx row 3: onset 'x' is not a frame number (second line of detail)"
        assert ("Traceback" in err) is debug


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (InputError("a.xlsx row 7: apex 'x' is not a frame number"), 2, "a.xlsx row 7"),
        (RunError("worker died"), 1, "worker died"),
        (PermissionError(13, "Permission denied", "/ro/out"), 1, "/ro/out: permission denied"),
        (FileNotFoundError(2, "No such file", "/x/y"), 2, "/x/y: no such file"),
        (ValueError("--lr must be > 0"), 2, "--lr must be > 0"),
        (ZeroDivisionError("division by zero"), 1, "unexpected ZeroDivisionError"),
    ],
)
def test_each_kind_of_failure_has_its_status(error, status, words):
    message, code = describe(error)
    assert code == status and words in message


def test_a_message_keeps_its_closing_quote_and_a_key_shows_without_its_repr_quotes():
    assert describe(ValueError("pred.tsv: row 0: unknown class 'Bagpipes'")) == ("pred.tsv: row 0: unknown class 'Bagpipes'", 2)
    assert describe(KeyError("no column 'onset' in sheet.csv")) == ("no column 'onset' in sheet.csv", 2)
    assert describe(KeyError("video_id")) == ("video_id", 2)


def test_progress_is_visible_when_piped():
    script = (
        "from mertk.console import progress_bar\n"
        "with progress_bar(40, 'samples') as advance:\n"
        "    for _ in range(40): advance(1)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "samples: 0/40" and lines[-1] == "samples: 40/40 (100%)"
    assert 5 <= len(lines) <= 12  # a line per tenth of the work, not one per item
