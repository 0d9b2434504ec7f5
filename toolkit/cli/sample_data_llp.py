"""`mertk sample-data llp`: the LLP layout with real filenames, weak labels and timelines."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from mertk.console import console
from mertk.sample_data.llp import DEFAULT_SIZES, REAL_SPLIT_SIZES, make_sample_llp
from mertk.sample_data.llp_shards import (
    LAYOUTS,
    SHARD_DTYPES,
    SHARD_FEATURE_SETS,
    SHARD_FORMATS,
    ShardLayoutOptions,
    make_sample_llp_shards,
)

LLP_VIDEOS = sum(REAL_SPLIT_SIZES.values())


def sample_llp(
    out: Path = typer.Option(..., "--out", help="Folder to write the corpus into: new, empty, or one this command wrote before (anything else is refused)."),
    seed: int = typer.Option(0, "--seed", help="Seed of backgrounds, noise and synthesised train timelines."),
    train: int = typer.Option(DEFAULT_SIZES["train"], "--train", min=0, max=REAL_SPLIT_SIZES["train"], help="Train videos (a prefix of AVVP_train.csv)."),
    val: int = typer.Option(DEFAULT_SIZES["val"], "--val", min=0, max=REAL_SPLIT_SIZES["val"], help="Val videos (a prefix of AVVP_val_pd.csv)."),
    test: int = typer.Option(DEFAULT_SIZES["test"], "--test", min=0, max=REAL_SPLIT_SIZES["test"], help="Test videos (a prefix of AVVP_test_pd.csv)."),
    videos: Optional[int] = typer.Option(
        None, "--videos", min=1,
        help=f"Total videos in the real split proportions, overriding --train/--val/--test; {LLP_VIDEOS} = LLP scale (about 8 GB). "
        "At most that with --layout videos; past it --layout shards goes on with unlisted pre-training videos.",
    ),
    source: Optional[Path] = typer.Option(
        None, "--source", help="Folder of the real LLP annotation CSVs (default: the copy shipped in the package)."
    ),
    no_features: bool = typer.Option(False, "--no-features", help="Write only the CSVs, truth and text anchors."),
    layout: Literal[LAYOUTS] = typer.Option("videos", "--layout", help="videos: one .npy per video and extractor (LLP's layout); shards: shards/features-*.parquet|.npy of many videos."),
    shard_videos: int = typer.Option(ShardLayoutOptions.videos_per_shard, "--shard-videos", min=1, help="Videos per shard file (--layout shards)."),
    shard_format: Literal[tuple(SHARD_FORMATS)] = typer.Option(ShardLayoutOptions.file_format, "--shard-format", help="Shard files (--layout shards)."),
    shard_features: Literal[tuple(SHARD_FEATURE_SETS)] = typer.Option(ShardLayoutOptions.features, "--shard-features", help="Feature parts in the shards: all, han (vggish, res152, r2plus1d_18) or clip (CLIP, CLAP)."),
    shard_dtype: Literal[tuple(SHARD_DTYPES)] = typer.Option(ShardLayoutOptions.dtype, "--shard-dtype", help="Vector precision in the shards."),
) -> None:
    """Write a deterministic LLP corpus: real CSV rows (subset), planted features, and the full truth beside them.

    Example: `mertk sample-data llp --out sample_data/llp` (200 train, 60 val, 60 test videos).
    """
    if layout == "shards":
        options = ShardLayoutOptions(shard_videos, shard_features, shard_format, shard_dtype)
        summary = make_sample_llp_shards(out, videos=videos or train + val + test, seed=seed, options=options, source=source)
        counts = ", ".join(f"{n} {split}" for split, n in summary.videos.items())
        console.print(f"wrote {summary.out}: {counts} videos in {summary.feature_files} feature shards")
        return
    summary = make_sample_llp(
        out, seed=seed, train=train, val=val, test=test, videos=videos, source=source, features=not no_features,
    )
    counts = ", ".join(f"{n} {split}" for split, n in summary.videos.items())
    console.print(f"wrote {summary.out}: {counts} videos, {summary.feature_files} feature files")


def register(app: typer.Typer) -> None:
    app.command("llp")(sample_llp)
