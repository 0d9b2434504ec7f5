"""Uni-MER construction: MER corpora (CASME II, SAMM, SMIC-HS, CAS(ME)^3, MMEW) -> unimer_sample
shards + manifest + report.

Stages (the method is in `mertk.unimer`; how pass 1 runs is `mertk.execution.measure_pool`):
  read sheets + frames of each corpus given (corpora.readers; ids prefixed with the corpus when
     there are several)
  -> pass 1, per sample (unimer.measure): face + 68 landmarks on the onset frame, aligned face
     crop, onset->t motion curve and apex estimate where the sheet says '/', onset->apex flow,
     head-motion compensation, strain, region motion; in `workers` processes, each chunk of
     `shard_size` samples cached under OUT/unimer/_measure/ so that an interrupted run resumes
  -> calibration on the whole run (unimer.rows.score_run): evidence thresholds, AU evidence
     (dual constraint), unlabelled motion, intensity bins
  -> pass 2 (unimer.rows): captions, instructions, rows, written by `run_sharded`
  -> the report (unimer.report), its sample cards drawn by the pool while the shards are written.
Chunks of pass 1 are the shards of pass 2, so the output bytes do not depend on the number of
workers or on interruptions.
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pyarrow as pa

from mertk.captions import IntensityBins
from mertk.corpora.mer import CorpusListing
from mertk.corpora.readers import merge_listings, read_corpora
from mertk.execution.measure_pool import measure_samples, start_measure_pool, submit_in_parts
from mertk.execution.sharded import run_sharded
from mertk.face import resolve_predictor_path
from mertk.shards.manifest import Manifest
from mertk.shards.schema import load_schema
from mertk.unimer.measure import SampleMeasurement
from mertk.unimer.parameters import SCHEMA_NAME, SCHEMA_VERSION, UnimerParameters
from mertk.unimer.report import draw_sample_cards, write_unimer_report
from mertk.unimer.rows import corpus_summary, score_run, write_shard_rows

MEASURE_DIR = "_measure"

__all__ = ["UnimerParameters", "UnimerRun", "build_unimer"]


@dataclass
class UnimerRun:
    """What a build returns: where it wrote, its manifest, and the run's intermediate records."""

    out_dir: Path
    manifest: Manifest
    measurements: list[SampleMeasurement]
    listing: CorpusListing
    bins: IntensityBins
    report: Path | None


def build_unimer(
    casme2: Path | str | None,
    out: Path | str,
    params: UnimerParameters = UnimerParameters(),
    workers: int = 1,
    command: str = "mertk build-unimer",
    progress: bool = True,
    report: bool = True,
    sheet: Path | str | None = None,
    *,
    samm: Path | str | None = None,
    smic: Path | str | None = None,
    casme3: Path | str | None = None,
    mmew: Path | str | None = None,
) -> UnimerRun:
    """Build OUT/unimer/ from one or more corpus folders (any subset): shards, manifest, report.
    Resumable. `sheet` and `params.layout` are CASME II's."""
    corpora = {name: Path(path) for name, path in (("casme2", casme2), ("samm", samm), ("smic", smic), ("casme3", casme3), ("mmew", mmew)) if path is not None}
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # Resolved once (a missing model is reported before any work; workers skip the lookup).
    params = replace(params, predictor=str(resolve_predictor_path(params.predictor)))
    out_dir = Path(out) / "unimer"
    # The pool's workers load the dlib models while this process reads the corpus.
    pool = start_measure_pool(params, workers) if workers > 1 else None
    try:
        listing = merge_listings(read_corpora(corpora, casme2_layout=params.layout, casme2_sheet=sheet))
        return _build(listing, corpora, out_dir, params, pool, command, progress, report)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _import_arrow_conversions() -> None:
    """pyarrow imports pandas on its first conversion: with a pool, this process does that while
    it only waits for pass 1, rather than when it writes the first shard."""
    pa.array([0])


def _build(
    listing: CorpusListing,
    corpora: dict[str, Path],
    out_dir: Path,
    params: UnimerParameters,
    pool: Executor | None,
    command: str,
    progress: bool,
    report: bool,
) -> UnimerRun:
    results = measure_samples(listing.samples, params, out_dir / MEASURE_DIR, pool=pool, progress=progress, while_waiting=_import_arrow_conversions)
    measurements = [r for r in results if isinstance(r, SampleMeasurement)]
    evidence_params, bins = score_run(measurements, params)
    sources = (
        {"casme2": str(corpora["casme2"]), "sheet": listing.sheet.name}  # a CASME II build records what it always did
        if list(corpora) == ["casme2"]
        else {"corpora": {name: str(path) for name, path in corpora.items()}}
    )
    parameters = {
        **sources,
        "layout": listing.layout,
        **params.fingerprint_dict(),
        "intensity_bins": bins.to_dict(),
        "evidence_thresholds": {"min_magnitude": evidence_params.min_magnitude, "strong_magnitude": evidence_params.strong_magnitude},
    }
    cards = None
    if report and pool is not None:  # drawn by the workers while this process writes the shards
        cards = submit_in_parts(pool, draw_sample_cards, measurements, bins, params.crop_size)
    manifest = run_sharded(
        out_dir,
        load_schema(SCHEMA_NAME, SCHEMA_VERSION),
        results,
        partial(write_shard_rows, bins=bins, params=params),
        command=command,
        parameters=parameters,
        shard_size=params.shard_size,
        pre_rejections=listing.rejections,
        workers=1,  # texts are cheap; the pool draws the report's cards meanwhile
        description="writing unimer shards",
        extra_versions=("opencv-contrib-python-headless", "dlib-bin"),
        summary=corpus_summary(measurements, listing),
        progress=progress,
    )
    report_path = None
    if report:
        parts = (job.result() for job in cards) if cards is not None else None
        report_path = write_unimer_report(out_dir, measurements, manifest, bins, cards=parts)
    return UnimerRun(out_dir, manifest, measurements, listing, bins, report_path)
