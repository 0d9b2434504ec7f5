"""`mertk migrate-labels`: dense audio / visual pseudo-labels from LLP's weak labels."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.console import console


def migrate_labels(
    llp: Path = typer.Option(..., "--llp", help="LLP folder: AVVP_*.csv and the feature folders (feats/, CLIP/, CLAP/)."),
    out: Path = typer.Option(Path("out"), "--out", help="Output root; results go to OUT/avvp_pseudo/."),
    features: str = typer.Option("han", "--features", help="han (vggish + res152 [+ r2plus1d_18]) or clip (CLAP audio + CLIP visual)."),
    text_anchors: Optional[Path] = typer.Option(None, "--text-anchors", help="safetensors file of class text anchors (tensors audio/visual, (25, dim))."),
    clip_checkpoint: Optional[Path] = typer.Option(None, "--clip-checkpoint", help="CLIP state dict (torch.save) for visual text anchors; never downloaded."),
    calibrate: str = typer.Option("none", "--calibrate", help="none (label-free thresholds, see --threshold-rule) or val (fit thresholds on the val dense labels)."),
    threshold_rule: str = typer.Option("midpoint", "--threshold-rule", help="Label-free rule: midpoint (null median to 95th percentile of carrying videos) or otsu."),
    target: Optional[Path] = typer.Option(None, "--target", help="Another corpus in the same layout to label by k nearest neighbours."),
    vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="JSON {source class: target class or null} for --target."),
    neighbours: int = typer.Option(10, "--neighbours", help="k of the --target k-NN migration."),
    refine: int = typer.Option(2, "--refine", help="Prototype refinement passes (HAN features)."),
    fit_videos: int = typer.Option(2000, "--fit-videos", help="Videos (evenly spaced) that anchors and thresholds are fitted on; 0 = all."),
    no_r2plus1d: bool = typer.Option(False, "--no-r2plus1d", help="HAN visual = res152 only (default: res152 + r2plus1d_18)."),
    workers: int = typer.Option(1, "--workers", help="Processes for the labelling pass."),
) -> None:
    """Migrate LLP's video-level labels to (segment, modality) pseudo-labels; report their quality.

    Example: `mertk migrate-labels --llp sample_data/llp --out out` then `mertk validate out/avvp_pseudo`.
    """
    from mertk.corpora.llp_annotations import LlpAnnotationError
    from mertk.migration.anchors import AnchorError
    from mertk.migration.transfer import VocabularyError
    from mertk.pipelines.label_migration import MigrationConfig, MigrationError, migrate_labels as run
    from mertk.errors import ResumeMismatchError

    config = MigrationConfig(
        features=features,
        r2plus1d=not no_r2plus1d,
        text_anchors=str(text_anchors) if text_anchors else None,
        clip_checkpoint=str(clip_checkpoint) if clip_checkpoint else None,
        calibrate=calibrate,
        threshold_rule=threshold_rule,
        refine_iterations=refine,
        fit_videos=fit_videos,
        target=str(target) if target else None,
        vocabulary=str(vocabulary) if vocabulary else None,
        neighbours=neighbours,
        workers=workers,
    )
    try:
        result = run(llp, out, config)
    except (MigrationError, LlpAnnotationError, AnchorError, VocabularyError, ResumeMismatchError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2)
    manifest = result.manifest
    console.print(
        f"wrote {result.out_dir}: {manifest.inputs_written} videos, {manifest.rows_written} rows, "
        f"{manifest.inputs_rejected} rejected; report {result.report}"
    )


def register(app: typer.Typer) -> None:
    app.command("migrate-labels")(migrate_labels)
