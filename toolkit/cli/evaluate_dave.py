"""`mertk evaluate dave PRED --unav PATH --split test`: mAP at tIoU 0.1..0.9 (UnAV-100 protocol)."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from mertk.console import console, stdout


def evaluate_dave(
    pred: Path = typer.Argument(..., help="dave_prediction shard folder or .parquet, or the UnAV code's JSON ({\"database\": {id: [{segment, label_id, scores}]}})."),
    unav: Path = typer.Option(..., "--unav", help="unav100_annotations.json, or the corpus folder holding it."),
    split: str = typer.Option("test", "--split", help="train, val (validation) or test."),
    as_json: bool = typer.Option(False, "--json", help='Print {"map": {"0.1": ..., "0.9": ...}, "average_map": ..., "videos": n} (percent).'),
) -> None:
    """Detection mAP (percent) at tIoU 0.1..0.9 and their mean, over the classes of the split's ground truth.

    Exit status 2 when PRED or the annotation file cannot be read.
    """
    from mertk.metrics.dave_evaluation import evaluate_dave_predictions

    evaluation = evaluate_dave_predictions(pred, unav, split)  # bad input: one line and exit 2 (mertk.cli.failures)
    for warning in evaluation.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    figures = evaluation.to_dict()
    if as_json:
        typer.echo(json.dumps(figures))
        return
    table = Table(title=f"UnAV-100 {split}: {figures['videos']} videos, {evaluation.predictions} predicted segments, mAP %")
    for threshold in figures["map"]:
        table.add_column(f"@{threshold}", justify="right")
    table.add_column("avg", justify="right")
    table.add_row(*(f"{value:.2f}" for value in figures["map"].values()), f"{figures['average_map']:.2f}")
    stdout.print(table)


def register(evaluate_app: typer.Typer) -> None:
    evaluate_app.command("dave")(evaluate_dave)
