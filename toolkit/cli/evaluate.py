"""`mertk evaluate avvp PRED --llp PATH --split val|test` and `mertk evaluate mer PRED`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mertk.console import console, stdout
from mertk.cli import evaluate_dave

evaluate_app = typer.Typer(
    help="Compute the field's metrics: the ten AVVP numbers on LLP val/test, UF1/UAR for MER.",
    no_args_is_help=True,
)


@evaluate_app.command("avvp")
def evaluate_avvp(
    pred: Path = typer.Argument(
        ...,
        help="Pseudo-label or prediction shard folder, or a .parquet/.tsv/.csv with filename, modality, "
        "event_labels, onset, offset (integer seconds, offset exclusive).",
    ),
    llp: Path = typer.Option(..., "--llp", help="LLP folder holding AVVP_eval_audio.csv, AVVP_eval_visual.csv and the split CSVs (or a data/ folder with them)."),
    split: str = typer.Option(..., "--split", help="val or test."),
    as_json: bool = typer.Option(False, "--json", help='Print {"segment": {...}, "event": {...}, "videos": n} (percent).'),
) -> None:
    """Segment- and event-level F1 (audio, visual, audio-visual, Type@AV, Event@AV) in percent.

    Every video of the split counts; a video without prediction rows predicts nothing.
    Exit status 2 when PRED or the LLP folder cannot be read.
    """
    from mertk.metrics.avvp_evaluation import evaluate_avvp_predictions

    evaluation = evaluate_avvp_predictions(pred, llp, split)  # bad input: one line and exit 2 (mertk.cli.failures)
    for warning in evaluation.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(evaluation.to_dict()))
        return
    scores = evaluation.scores
    table = Table(title=f"AVVP {split} ({scores.videos} videos), F1 %")
    table.add_column("level")
    for header in ("audio", "visual", "audio-visual", "Type@AV", "Event@AV"):
        table.add_column(header, justify="right")
    for level, figures in (("segment", scores.segment), ("event", scores.event)):
        table.add_row(level, *(f"{figures[key]:.2f}" for key in ("audio", "visual", "audio_visual", "type", "event")))
    stdout.print(table)


@evaluate_app.command("mer")
def evaluate_mer(
    pred: Path = typer.Argument(..., help="mer_prediction shard folder, .parquet, .csv or .tsv with sample_id, subject, label, prediction (and dataset)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="5class or 3class: the classes counted (default: inferred from the labels)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Comma-separated class list, overrides --protocol."),
    skip_absent: bool = typer.Option(False, "--skip-absent", help="Leave classes with no true and no predicted sample out of the means (default: they count 0)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"uf1": x, "uar": x, ...} (fractions in [0, 1]).'),
) -> None:
    """UF1 (macro F1) and UAR (macro recall) over all predictions pooled, plus per dataset when composite.

    Exit status 2 when PRED cannot be read or holds a class outside the protocol.
    """
    from mertk.metrics.mer import evaluate_mer_predictions

    class_list = [name.strip() for name in classes.split(",") if name.strip()] if classes else None
    result = evaluate_mer_predictions(pred, classes=class_list, protocol=protocol, skip_absent=skip_absent)
    if result["absent_classes"]:
        console.print(
            f"[yellow]warning:[/yellow] no true and no predicted sample for {', '.join(result['absent_classes'])}: "
            + ("left out of the means" if skip_absent else "counted as 0 in UF1 and UAR"),
            highlight=False,
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    out = stdout
    table = Table(title=f"MER ({result['samples']} samples, {result['subjects']} subjects, classes {', '.join(result['classes'])})")
    for header in ("set", "samples", "UF1", "UAR"):
        table.add_column(header, justify="right" if header != "set" else "left")
    table.add_row("pooled", str(result["samples"]), f"{result['uf1']:.4f}", f"{result['uar']:.4f}")
    for name, figures in result["datasets"].items():
        table.add_row(name, str(figures["samples"]), f"{figures['uf1']:.4f}", f"{figures['uar']:.4f}")
    out.print(table)
    per_class = Table(title="per class")
    for header in ("class", "support", "predicted", "precision", "recall", "F1"):
        per_class.add_column(header, justify="right" if header != "class" else "left")
    for name, figures in result["per_class"].items():
        per_class.add_row(
            name, str(figures["support"]), str(figures["predicted"]),
            f"{figures['precision']:.3f}", f"{figures['recall']:.3f}", f"{figures['f1']:.3f}",
        )
    out.print(per_class)


def register(app: typer.Typer) -> None:
    evaluate_dave.register(evaluate_app)
    app.add_typer(evaluate_app, name="evaluate")
