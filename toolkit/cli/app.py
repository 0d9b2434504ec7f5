"""The `mertk` command line: parses arguments and calls pipelines, nothing more.

Each subcommand lives in its own module under mertk.cli and exposes `register(app)`. `main` is
the one place where a failure becomes one line and an exit status (mertk.cli.failures).
"""
from __future__ import annotations

import typer

from mertk import __version__
from mertk.cli import build_unimer, evaluate, export, migrate_labels, predict, sample_data, train, validate
from mertk.cli.failures import run_cli, set_debug

app = typer.Typer(
    name="mertk",
    help=(
        "mertk builds, validates and trains on research datasets for three video-understanding tasks:\n\n"
        "* micro-expression recognition: `mertk build-unimer --casme2 PATH [--samm ...]` turns the MER corpora "
        "into Uni-MER, an instruction dataset whose captions state only the facial motion that both optical "
        "flow and the Action Unit labels support; `mertk train mer` / `mertk predict mer`;\n\n"
        "* audio-visual video parsing: `mertk migrate-labels --llp PATH` turns LLP's video-level labels "
        "into dense audio / visual segment pseudo-labels by similarity-based label migration; `mertk train avvp`;\n\n"
        "* dense audio-visual event localisation: `mertk train dave --unav PATH` trains ESG-Net on UnAV-100.\n\n"
        "Outputs are Parquet shards with a manifest; `mertk validate` checks them against versioned "
        "schemas, `mertk evaluate` computes the field's metrics and `mertk train` trains the bundled models. "
        "A failure is one line (exit 2: bad input, 1: the run failed); `mertk --debug ...` adds the traceback."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)



def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mertk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="On a failure, show the Python traceback after the one-line error."),
) -> None:
    """mertk: datasets, schemas, metrics and trainers for MER, AVVP and DAVE research."""
    set_debug(debug)


for _command in (validate, sample_data, train, predict, evaluate, build_unimer, export, migrate_labels):
    _command.register(app)


def main() -> None:
    run_cli(app)
