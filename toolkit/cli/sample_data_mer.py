"""The `mertk sample-data <corpus>` command shared by the generated MER corpora (SAMM, SMIC-HS, CAS(ME)^3, MMEW).

Each corpus has its own CLI module (`sample_data_<corpus>.py`) that registers this command with
its generator; the options are the same for all of them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import typer

from mertk.console import console, progress_bar


def make_command(corpus: str, load: Callable[[], tuple[dict, Callable]], scales_doc: str, example: str) -> Callable:
    """A typer command that writes the `corpus` sample; `load()` imports the generator on use and
    returns (its SCALES, its generate function)."""

    def command(
        out: Path = typer.Option(..., "--out", help="Folder to write the corpus into (created if needed; a previous generated corpus there is replaced, any other content refused)."),
        seed: int = typer.Option(0, "--seed", help="Seed of subjects, labels, motions and noise."),
        subjects: Optional[int] = typer.Option(None, "--subjects", help="Number of subjects."),
        samples_per_subject: Optional[int] = typer.Option(None, "--samples-per-subject", help="Clips of each subject."),
        width: Optional[int] = typer.Option(None, "--width", help="Frame width in pixels."),
        height: Optional[int] = typer.Option(None, "--height", help="Frame height in pixels."),
        frames: Optional[int] = typer.Option(None, "--frames", help="Frames per clip, onset to offset."),
        workers: int = typer.Option(1, "--workers", min=1, help="Processes rendering subjects in parallel (same bytes for any value)."),
    ) -> None:
        scales, generate = load()
        overrides = {"seed": seed, "subjects": subjects, "samples_per_subject": samples_per_subject, "width": width, "height": height, "frames": frames}
        config = replace(scales["default"], **{k: v for k, v in overrides.items() if v is not None})
        with progress_bar(config.sample_count, f"{corpus} samples") as advance:
            summary = generate(out, config, progress=advance, workers=workers)
        emotions = ", ".join(f"{name} {count}" for name, count in summary.emotions.items())
        console.print(
            f"wrote {summary.out_dir}: {summary.subjects} subjects, {summary.samples} samples, {summary.frames} frames "
            f"({summary.bytes_written / 1e6:.1f} MB); emotions: {emotions}; mislabels: {summary.missing_labels} rows list an "
            f"unplanted AU, {summary.unlisted_planted} rows plant an unlisted AU; {summary.apex_not_in_sheet} rows whose sheet apex is not the true one"
        )

    command.__doc__ = f"Write a deterministic {corpus} corpus in its real layout ({scales_doc}), with the planted truth beside it.\n\nExample: `{example}`."
    return command
