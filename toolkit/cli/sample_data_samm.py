"""`mertk sample-data samm`: the SAMM layout from real face photos, with the planted truth."""
from __future__ import annotations

import typer

from mertk.cli.sample_data_mer import make_command


def _load():
    from mertk.sample_data import samm

    return samm.SCALES, samm.generate_samm


def register(app: typer.Typer) -> None:
    app.command("samm")(make_command("SAMM", _load, "SAMM/<subject>/<clip>/<subject>_<frame>.jpg grey frames, SAMM_Micro_FACS_Codes_v2.xlsx with its quirks", "mertk sample-data samm --out /tmp/samm"))
