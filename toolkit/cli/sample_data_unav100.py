"""`mertk sample-data unav100`: the UnAV-100 layout with real timelines and planted features."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.console import console


def sample_unav100(
    out: Path = typer.Option(..., "--out", help="Folder to write the corpus into (new, empty, or one this command wrote before)."),
    seed: int = typer.Option(0, "--seed", help="Seed of strengths, leaks, hops and noise (class directions are fixed)."),
    train: int = typer.Option(160, "--train", min=0, help="Train videos."),
    val: int = typer.Option(40, "--val", min=0, help="Validation videos."),
    test: int = typer.Option(40, "--test", min=0, help="Test videos."),
    source: Optional[Path] = typer.Option(
        None, "--source", help="Plant on this real unav100_annotations.json (default: the timelines packaged with mertk, taken from it)."
    ),
) -> None:
    """Write a deterministic UnAV-100 corpus: annotations/, av_features/ (rgb, flow, vggish) and sample_info.json.

    Example: `mertk sample-data unav100 --out sample_data/unav100` (160 train, 40 val, 40 test videos, about 260 MB).
    """
    from mertk.sample_data.unav100 import make_sample_unav100

    summary = make_sample_unav100(out, seed=seed, train=train, val=val, test=test, source=source)
    counts = ", ".join(f"{n} {split}" for split, n in summary.videos.items())
    console.print(f"wrote {summary.out}: {counts} videos, {summary.feature_files} feature files ({len(summary.defects)} planted broken videos)", highlight=False)


def register(sample_app: typer.Typer) -> None:
    sample_app.command("unav100")(sample_unav100)
