"""`mertk sample-data casme2`: the CASME II layout from real face photos, with the planted truth."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from mertk.console import console, progress_bar


def _scale_name(value: str) -> str:
    """--scale: one of the generator's presets (looked up when the option is parsed)."""
    from mertk.sample_data.casme2 import SCALES

    if value not in SCALES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SCALES)}")
    return value


def sample_casme2(
    out: Path = typer.Option(..., "--out", help="Folder to write the corpus into (created if needed; a previous generated corpus there is replaced)."),
    seed: int = typer.Option(0, "--seed", help="Seed of subjects, labels, motions and noise."),
    scale: str = typer.Option("default", "--scale", callback=_scale_name, help="Preset: 'default' (6 subjects x 4 samples, 256x192, 24 frames) or 'casme2' (26 subjects, 255 samples, 640x480, 60 frames)."),
    subjects: Optional[int] = typer.Option(None, "--subjects", min=1, help="Number of subjects (sub01..)."),
    samples_per_subject: Optional[int] = typer.Option(None, "--samples-per-subject", min=1, help="Samples of each subject."),
    total_samples: Optional[int] = typer.Option(None, "--total-samples", min=1, help="Total samples spread over the subjects (overrides --samples-per-subject)."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help="Frame width in pixels."),
    height: Optional[int] = typer.Option(None, "--height", min=1, help="Frame height in pixels."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Frames per clip, onset to offset."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", min=1, max=100, help="JPEG quality of the frames (1-100)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes rendering subjects in parallel (same bytes for any value)."),
) -> None:
    """Write a deterministic CASME II corpus: frames, coding sheet (real columns and quirks), and the truth beside them.

    Example: `mertk sample-data casme2 --out sample_data/casme2` (the committed demo corpus);
    `mertk sample-data casme2 --out /tmp/casme2_full --scale casme2` for a CASME II-sized one.
    """
    from mertk.sample_data.casme2 import SCALES, generate_casme2

    overrides = {
        "seed": seed,
        "subjects": subjects,
        "samples_per_subject": samples_per_subject,
        "total_samples": total_samples,
        "width": width,
        "height": height,
        "frames": frames,
        "jpeg_quality": jpeg_quality,
    }
    config = replace(SCALES[scale], **{k: v for k, v in overrides.items() if v is not None})
    if total_samples is None and samples_per_subject is not None:
        config = replace(config, total_samples=None)
    with progress_bar(config.sample_count, "casme2 samples") as advance:
        summary = generate_casme2(out, config, progress=advance, workers=workers)
    emotions = ", ".join(f"{name} {count}" for name, count in summary.emotions.items())
    console.print(
        f"wrote {summary.out_dir}: {summary.subjects} subjects, {summary.samples} samples, {summary.frames} frames "
        f"({summary.bytes_written / 1e6:.1f} MB); emotions: {emotions}; mislabels: {summary.missing_labels} rows list an "
        f"unplanted AU, {summary.unlisted_planted} rows plant an unlisted AU; {summary.slash_apex} rows with apex '/'"
    )


def register(app: typer.Typer) -> None:
    app.command("casme2")(sample_casme2)
