"""`mertk sample-data smic`: the SMIC-HS layout from real face photos, with the planted truth."""
from __future__ import annotations

import typer

from mertk.cli.sample_data_mer import make_command


def _load():
    from mertk.sample_data import smic

    return smic.SCALES, smic.generate_smic


def register(app: typer.Typer) -> None:
    app.command("smic")(make_command("SMIC-HS", _load, "HS/<subject>/micro/<emotion>/<clip>/image<frame>.bmp, labels from the folders", "mertk sample-data smic --out /tmp/smic"))
