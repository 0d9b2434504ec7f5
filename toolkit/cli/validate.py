"""`mertk validate PATH...`"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer
from rich.table import Table

from mertk.errors import InputError
from mertk.console import stdout


def validate(
    paths: List[Path] = typer.Argument(..., help="Shard files, manifest files (_manifest.json) or output directories (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report instead of a table."),
) -> None:
    """Check shards against the versioned schema named in their metadata, and manifests against their shards.

    Exit status: 0 when everything holds, 1 when any check fails, 2 for unusable arguments
    (a path that does not exist). Every message names the file, and the row and column where it applies.
    """
    from mertk.shards.validate import validate_paths

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"no such file or directory: {', '.join(missing)}")
    reports = validate_paths(paths)
    ok = all(r.ok for r in reports)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "files": [r.to_dict() for r in reports]}, indent=2))
    else:
        table = Table(title="mertk validate", show_lines=False)
        table.add_column("file", overflow="fold")
        for header in ("kind", "schema", "rows", "result"):
            table.add_column(header, no_wrap=True)
        for report in reports:
            result = "[green]ok[/green]" if report.ok else f"[red]{len(report.findings)} problem(s)[/red]"
            table.add_row(report.file, report.kind, report.schema or "-", str(report.rows if report.rows is not None else "-"), result)
        out = stdout
        out.print(table)
        for report in reports:
            for finding in report.findings:
                out.print(f"[red]FAIL[/red] {finding}", highlight=False, soft_wrap=True)
        failed = sum(not r.ok for r in reports)
        verdict = "[green]all hold[/green]" if ok else f"[red]{failed} failing[/red]"
        out.print(f"{len(reports)} file(s) checked: {verdict}")
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
