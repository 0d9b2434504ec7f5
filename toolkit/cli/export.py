"""`mertk export OUT/unimer --format llava|sharegpt --out DIR`"""
from __future__ import annotations

from pathlib import Path

import typer

from mertk.cli.train import choice
from mertk.console import console
from mertk.export.mllm import EXPORT_FORMATS, IMAGE_CHOICES


def export(
    unimer_dir: Path = typer.Argument(..., help="The unimer directory written by `mertk build-unimer` (OUT/unimer, or OUT)."),
    fmt: str = typer.Option("llava", "--format", callback=choice(EXPORT_FORMATS), help="llava (LLaVA conversations) or sharegpt (LLaMA-Factory messages + dataset_info.json)."),
    out: Path = typer.Option(..., "--out", help="Directory for the JSON file and images/."),
    images: str = typer.Option("apex+flow", "--images", callback=choice(IMAGE_CHOICES), help="apex (aligned apex face) or apex+flow (plus the flow picture)."),
) -> None:
    """Write the Uni-MER instruction pairs as MLLM fine-tuning JSON, images referenced by relative path.

    The shards are checked first (manifest, schema, every shard's hash): a directory that
    `mertk validate` rejects is refused with one line."""
    from mertk.export import export_instructions

    summary = export_instructions(unimer_dir, out, fmt, images)
    console.print(f"wrote {summary.records} records and {summary.images} images: {summary.json_path}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
