"""`mertk sample-data <corpus>`: small deterministic corpora in the real on-disk layouts."""
from __future__ import annotations

import typer

from mertk.cli import sample_data_casme2, sample_data_casme3, sample_data_llp, sample_data_megc2019, sample_data_mmew, sample_data_samm, sample_data_smic, sample_data_unav100

sample_app = typer.Typer(
    help="Write small deterministic corpora in the real layouts (CASME II, SAMM, SMIC-HS, CAS(ME)^3, MMEW, the MEGC2019 composite, LLP, UnAV-100), with their ground truth beside them.",
    no_args_is_help=True,
)

for _corpus in (sample_data_llp, sample_data_casme2, sample_data_samm, sample_data_smic, sample_data_casme3, sample_data_mmew, sample_data_megc2019, sample_data_unav100):
    _corpus.register(sample_app)


def register(app: typer.Typer) -> None:
    app.add_typer(sample_app, name="sample-data")
