"""`mertk sample-data casme2|llp`: small deterministic corpora in the real on-disk layouts."""
from __future__ import annotations

import importlib

import typer

sample_app = typer.Typer(
    help="Write small deterministic corpora in the real CASME II / LLP layouts, with their ground truth beside them.",
    no_args_is_help=True,
)

# One module per corpus; each exposes register(sample_app).
CORPUS_MODULES = ("mertk.cli.sample_data_llp", "mertk.cli.sample_data_casme2", "mertk.cli.sample_data_unav100")


def register(app: typer.Typer) -> None:
    for module in CORPUS_MODULES:
        importlib.import_module(module).register(sample_app)
    app.add_typer(sample_app, name="sample-data")
