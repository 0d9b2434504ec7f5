"""`mertk predict mer --model RUN [--fold SUBJECT | --all-folds] UNIMER_DIR --out DIR`: parses and calls mertk.training."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.cli.train import choice
from mertk.console import console
from mertk.training.options import DEVICES

predict_app = typer.Typer(help="Apply a trained model to new data: `mer` (a `mertk train mer` run on any Uni-MER directory).", no_args_is_help=True)


@predict_app.command("mer")
def mer(
    unimer_dir: Path = typer.Argument(..., help="Uni-MER directory to predict (output of `mertk build-unimer`: a user's own clips, or a corpus)."),
    model: Path = typer.Option(..., "--model", help="Run directory of `mertk train mer` (its checkpoints/ folder)."),
    out: Path = typer.Option(..., "--out", help="Output directory: predictions.parquet (mer_prediction.v1) and _manifest.json."),
    fold: Optional[str] = typer.Option(None, "--fold", help="Use the fold model that held out this subject (reproduces the run's own predictions for it)."),
    all_folds: bool = typer.Option(False, "--all-folds", help="Average the class probabilities of every fold model."),
    device: str = typer.Option("auto", "--device", callback=choice(DEVICES), help="auto (cuda when available), cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default)."),
) -> None:
    """Predict the emotion class of every sample; without --fold / --all-folds the run's --final model is used."""
    from mertk.training.mer_predict import predict_mer

    summary = predict_mer(model, unimer_dir, out, fold=fold, all_folds=all_folds, device=device, threads=threads)
    oracle = " [ORACLE model: it read the samples' coded AUs]" if summary.oracle else ""
    scores = f"; on the {summary.scores['samples']} labelled samples UF1 {summary.scores['uf1']:.4f}, UAR {summary.scores['uar']:.4f}" if summary.scores else ""
    console.print(f"[green]done[/green]: {summary.samples} samples predicted with {', '.join(summary.checkpoints)} "
                  f"(test-time inputs: {summary.test_inputs}){oracle}{scores} -> {summary.out}", highlight=False)  # fmt: skip


def register(app: typer.Typer) -> None:
    app.add_typer(predict_app, name="predict")
