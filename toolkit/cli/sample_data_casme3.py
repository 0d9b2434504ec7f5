"""`mertk sample-data casme3`: the CAS(ME)^3 part A layout from real face photos, with the planted truth."""
from __future__ import annotations

import typer

from mertk.cli.sample_data_mer import make_command


def _load():
    from mertk.sample_data import casme3

    return casme3.SCALES, casme3.generate_casme3


def register(app: typer.Typer) -> None:
    app.command("casme3")(make_command("CAS(ME)^3 part A", _load, "data/part_A/<subject>/<recording>/color/<frame>.jpg, cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx with its quirks", "mertk sample-data casme3 --out /tmp/casme3"))
