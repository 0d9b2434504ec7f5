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
    layout: str = typer.Option("videos", "--layout", help="videos (one .npy per video and extractor, LLP's layout) or shards (shards/features-*.parquet of many videos; --videos may exceed LLP's 11849)."),
    shard_videos: int = typer.Option(1000, "--shard-videos", help="Videos per shard file (--layout shards)."),
    shard_format: str = typer.Option("parquet", "--shard-format", help="parquet or npy (--layout shards)."),
    shard_features: str = typer.Option("all", "--shard-features", help="Feature parts in the shards: all, han (vggish, res152, r2plus1d_18) or clip (CLIP, CLAP)."),
    shard_dtype: str = typer.Option("float16", "--shard-dtype", help="float16 or float32 vectors (--layout shards)."),
) -> None:
    """Write a deterministic LLP corpus: real CSVs (subset), planted features, and the full truth beside them.

    Example: `mertk sample-data llp --out sample_data/llp` (200 train, 60 val, 60 test videos).
    """
    from mertk.sample_data.llp import REAL_LLP, SampleLlpError, make_sample_llp

    if layout == "shards":
        from mertk.sample_data.llp_shards import ShardLayoutOptions, make_sample_llp_shards

        options = ShardLayoutOptions(shard_videos, shard_features, shard_format, shard_dtype)
        summary = make_sample_llp_shards(out, videos=videos or train + val + test, seed=seed, options=options, source=source or REAL_LLP)
        counts = ", ".join(f"{n} {split}" for split, n in summary.videos.items())
        console.print(f"wrote {summary.out}: {counts} videos in {summary.feature_files} feature shards")
        return
    if layout != "videos":
        console.print(f"[red]error:[/red] --layout must be videos or shards, not {layout!r}")
        raise typer.Exit(2)
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
