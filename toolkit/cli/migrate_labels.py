"""`mertk migrate-labels`: dense audio / visual pseudo-labels from LLP's weak labels."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from mertk.console import console
from mertk.corpora.llp_features import FEATURE_SETS
from mertk.execution.ray_executor import EXECUTORS
from mertk.migration.config import CALIBRATIONS, COMBINE_RULES, OUTPUT_FOLDER, TARGET_FOLDER, MigrationConfig
from mertk.migration.neighbours import INDEX_KINDS
from mertk.migration.thresholds import THRESHOLD_RULES

DEFAULTS = MigrationConfig()


def migrate_labels(
    llp: Path = typer.Option(..., "--llp", help="LLP folder: AVVP_*.csv and the feature folders (feats/, CLIP/, CLAP/)."),
    out: Path = typer.Option(Path("out"), "--out", help=f"Output root: pseudo-labels go to OUT/{OUTPUT_FOLDER}/, --target labels to OUT/{TARGET_FOLDER}/."),
    features: Literal[FEATURE_SETS] = typer.Option(DEFAULTS.features, "--features", help="han (vggish + res152 [+ r2plus1d_18]) or clip (CLAP audio + CLIP visual)."),
    text_anchors: Optional[Path] = typer.Option(None, "--text-anchors", help="safetensors file of class text anchors (tensors audio/visual, (25, dim))."),
    clip_checkpoint: Optional[Path] = typer.Option(None, "--clip-checkpoint", help="CLIP state dict (torch.save) for visual text anchors; never downloaded."),
    calibrate: Literal[CALIBRATIONS] = typer.Option(DEFAULTS.calibrate, "--calibrate", help="none: label-free thresholds (see --threshold-rule); val: thresholds fitted on the val dense labels."),
    threshold_rule: Literal[THRESHOLD_RULES] = typer.Option(DEFAULTS.threshold_rule, "--threshold-rule", help="Label-free rule: midpoint (null median to 95th percentile of carrying videos) or otsu."),
    target: Optional[Path] = typer.Option(None, "--target", help=f"Another corpus in the same layout to label by k nearest neighbours (written to OUT/{TARGET_FOLDER}/)."),
    vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="JSON {source class: target class or null} for --target."),
    neighbours: int = typer.Option(DEFAULTS.neighbours, "--neighbours", min=1, help="k of the --target k-NN migration."),
    refine: int = typer.Option(DEFAULTS.refine_iterations, "--refine", min=0, help="Prototype refinement passes (modalities without text anchors)."),
    fit_videos: int = typer.Option(DEFAULTS.fit_videos, "--fit-videos", min=0, help="Videos (evenly spaced) that anchors and thresholds are fitted on; 0 = all."),
    no_r2plus1d: bool = typer.Option(False, "--no-r2plus1d", help="HAN visual = res152 only (default: res152 + r2plus1d_18)."),
    workers: int = typer.Option(DEFAULTS.workers, "--workers", min=1, help="Processes for the labelling pass, or the CPUs of a local Ray (same bytes for any value)."),
    executor: Literal[EXECUTORS] = typer.Option(DEFAULTS.executor, "--executor", help="local (this machine) or ray (Ray tasks, labelling and --target alike; same bytes)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to run on (e.g. auto, HEAD_IP:6379); default: $RAY_ADDRESS, else a local Ray."),
    neighbour_index: Literal[INDEX_KINDS] = typer.Option(DEFAULTS.neighbour_index, "--neighbour-index", help="--target neighbours: exact (faiss IndexFlatIP), hnsw (IndexHNSWFlat, efSearch tuned to recall@10 >= 0.975 on a sample), auto (exact up to 5e10 bank x target segments)."),
    generator: Optional[Path] = typer.Option(None, "--generator", help="Checkpoint of `mertk train generator`: label with its segment probabilities within each weak label."),
    combine: Literal[COMBINE_RULES] = typer.Option(DEFAULTS.combine, "--combine", help="With --generator: generator (its probabilities), similarity (today's scores) or mean (of both)."),
) -> None:
    """Migrate LLP's video-level labels to (segment, modality) pseudo-labels; report their quality.

    Writes Parquet shards, _manifest.json and _report.html (pseudo-labels beside the naive baseline
    on every split with dense labels). Example: `mertk migrate-labels --llp sample_data/llp --out out`
    then `mertk validate out/avvp_pseudo`.
    """
    from mertk.pipelines.label_migration import migrate_labels as run  # the heavy imports, once a run starts

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
        neighbour_index=neighbour_index,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
        generator=str(generator) if generator else None,
        combine=combine,
    )
    result = run(llp, out, config)
    manifest = result.manifest
    console.print(
        f"wrote {result.out_dir}: {manifest.inputs_written} videos, {manifest.rows_written} rows, "
        f"{manifest.inputs_rejected} rejected; report {result.report}"
    )


def register(app: typer.Typer) -> None:
    app.command("migrate-labels")(migrate_labels)
