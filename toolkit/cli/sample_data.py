"""`mertk sample-data <corpus>`: small deterministic corpora in the real on-disk layouts."""
from __future__ import annotations

import importlib

import typer

sample_app = typer.Typer(
    help="Write small deterministic corpora in the real layouts (CASME II, SAMM, SMIC-HS, CAS(ME)^3, MMEW, the MEGC2019 composite, LLP), with their ground truth beside them.",
    no_args_is_help=True,
)

# One module per corpus; each exposes register(sample_app).
CORPUS_MODULES = (
    "mertk.cli.sample_data_llp",
    "mertk.cli.sample_data_casme2",
    "mertk.cli.sample_data_samm",
    "mertk.cli.sample_data_smic",
    "mertk.cli.sample_data_casme3",
    "mertk.cli.sample_data_mmew",
    "mertk.cli.sample_data_megc2019",
)


def register(app: typer.Typer) -> None:
    for module in CORPUS_MODULES:
        importlib.import_module(module).register(sample_app)
    app.add_typer(sample_app, name="sample-data")
