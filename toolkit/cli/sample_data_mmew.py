"""`mertk sample-data mmew`: the MMEW layout from real face photos, with the planted truth."""
from __future__ import annotations

import typer

from mertk.cli.sample_data_mer import make_command


def _load():
    from mertk.sample_data import mmew

    return mmew.SCALES, mmew.generate_mmew


def register(app: typer.Typer) -> None:
    app.command("mmew")(make_command("MMEW", _load, "Micro_Expression/<emotion>/<clip>/<frame>.jpg, MMEW_Micro_Exp.xlsx with its quirks", "mertk sample-data mmew --out /tmp/mmew"))
