"""`mertk sample-data megc2019`: CASME II, SAMM and SMIC-HS samples named after the real composite list, and that list restricted to them."""
from __future__ import annotations

import typer

from mertk.cli.sample_data_mer import make_command


def _load():
    from mertk.sample_data import megc2019

    return megc2019.SCALES, megc2019.generate_megc2019


def register(app: typer.Typer) -> None:
    app.command("megc2019")(make_command("MEGC2019 composite (CASME II + SAMM + SMIC-HS)", _load, "casme2/, samm/, smic/ and combined_3class_gt.csv restricted to the clips made", "mertk sample-data megc2019 --out /tmp/megc2019"))
