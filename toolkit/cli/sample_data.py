"""`mertk sample-data casme2|llp`: small deterministic corpora in the real on-disk layouts."""
from __future__ import annotations

import typer

from mertk.cli import sample_data_casme2, sample_data_llp

sample_app = typer.Typer(
    help="Write small deterministic corpora in the real CASME II / LLP layouts, with their ground truth beside them.",
    no_args_is_help=True,
)

for _corpus in (sample_data_llp, sample_data_casme2):
    _corpus.register(sample_app)


def register(app: typer.Typer) -> None:
    app.add_typer(sample_app, name="sample-data")
