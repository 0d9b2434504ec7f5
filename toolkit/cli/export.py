"""`mertk export OUT/unimer --format llava|sharegpt --out DIR`"""
from __future__ import annotations

from pathlib import Path

import typer

from mertk.console import console


def export(
    unimer_dir: Path = typer.Argument(..., help="The unimer directory written by `mertk build-unimer` (OUT/unimer, or OUT)."),
    fmt: str = typer.Option("llava", "--format", help="llava (LLaVA conversations) or sharegpt (LLaMA-Factory messages + dataset_info.json)."),
    out: Path = typer.Option(..., "--out", help="Directory for the JSON file and images/."),
    images: str = typer.Option("apex+flow", "--images", help="apex (aligned apex face) or apex+flow (plus the flow picture)."),
) -> None:
    """Write the Uni-MER instruction pairs as MLLM fine-tuning JSON, images referenced by relative path."""
    from mertk.export import ExportError, export_instructions

    try:
        summary = export_instructions(unimer_dir, out, fmt, images)
    except ExportError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2)
    console.print(f"wrote {summary.records} records and {summary.images} images: {summary.json_path}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
