"""`mertk train dave`: ESG-Net and its ablations on UnAV-100; parses options and calls the pipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.console import console


def train_dave(
    unav: Path = typer.Option(..., "--unav", help="UnAV-100 folder: annotations/unav100_annotations.json (or the file at its top) and av_features/ (or the .npy files at its top)."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, predictions.parquet (test split), checkpoints, _report.html."),
    esi: bool = typer.Option(True, "--esi/--no-esi", help="Early semantics interaction: AV fusion and a video-level loss at every pyramid stage."),
    mode: bool = typer.Option(True, "--mode/--no-mode", help="Mixture of dependency experts: serial gated MoE layers before the heads."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    d_model: int = typer.Option(64, "--d-model", min=8),
    mode_layers: int = typer.Option(2, "--mode-layers", min=1),
    esi_loss_weight: float = typer.Option(1.0, "--esi-loss-weight", help="Weight of the per-stage video-level classification losses."),
    max_segments: int = typer.Option(100, "--max-segments", min=1, help="Segments kept per video after soft-NMS."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu or cuda. Runs are deterministic on cpu for a seed."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed features are cached (default RUN/cache); share it between runs."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default). On a busy shared machine --threads 1 is often much faster."),
) -> None:
    """Train ESG-Net (dense audio-visual event localisation); select on validation; report mAP at tIoU 0.1..0.9."""
    from mertk.pipelines.train_dave import run_train_dave
    from mertk.training.dave import DaveTrainConfig

    config = DaveTrainConfig(
        unav=unav, out=out, esi=esi, mode=mode, epochs=epochs, batch_size=batch_size, lr=lr, d_model=d_model,
        mode_layers=mode_layers, esi_loss_weight=esi_loss_weight, max_segments=max_segments, seed=seed, device=device,
        cache_dir=cache_dir, threads=threads,
    )  # fmt: skip
    metrics = run_train_dave(config)
    for split in ("val", "test"):
        figures = metrics[split]
        console.print(f"{split}: mAP@0.5 {figures['map']['0.5']:.2f}, average mAP (0.1..0.9) {figures['average_map']:.2f}", highlight=False)
    rejected = f", {metrics['videos']['rejected']} videos rejected (see metrics.json)" if metrics["videos"]["rejected"] else ""
    console.print(f"[green]done[/green] ({metrics['variant']}): best epoch {metrics['best_epoch']}{rejected} -> {out}", highlight=False)


def register(train_app: typer.Typer) -> None:
    train_app.command("dave")(train_dave)
