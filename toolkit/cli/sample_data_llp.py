"""`mertk sample-data llp`: the LLP layout with real filenames, weak labels and timelines."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.console import console


def sample_llp(
    out: Path = typer.Option(..., "--out", help="Folder to write the corpus into (created if needed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of backgrounds, noise and synthesised train timelines."),
    train: int = typer.Option(200, "--train", help="Train videos (a prefix of AVVP_train.csv)."),
    val: int = typer.Option(60, "--val", help="Val videos (a prefix of AVVP_val_pd.csv)."),
    test: int = typer.Option(60, "--test", help="Test videos (a prefix of AVVP_test_pd.csv)."),
    videos: Optional[int] = typer.Option(
        None, "--videos", help="Total videos in the real split proportions, overriding --train/--val/--test; 11849 = LLP scale (about 8 GB)."
    ),
    source: Path = typer.Option(None, "--source", help="Folder of the real LLP CSVs (default: the shared copy)."),
    no_features: bool = typer.Option(False, "--no-features", help="Write only the CSVs, truth and text anchors."),
) -> None:
    """Write a deterministic LLP corpus: real CSVs (subset), planted features, and the full truth beside them.

    Example: `mertk sample-data llp --out sample_data/llp` (200 train, 60 val, 60 test videos).
    """
    from mertk.sample_data.llp import REAL_LLP, SampleLlpError, make_sample_llp

    try:
        summary = make_sample_llp(
            out, seed=seed, train=train, val=val, test=test, videos=videos,
            source=source or REAL_LLP, features=not no_features,
        )
    except SampleLlpError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2)
    counts = ", ".join(f"{n} {split}" for split, n in summary.videos.items())
    console.print(f"wrote {summary.out}: {counts} videos, {summary.feature_files} feature files")


def register(app: typer.Typer) -> None:
    app.command("llp")(sample_llp)
