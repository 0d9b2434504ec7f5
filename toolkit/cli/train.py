"""`mertk train mer|avvp`: parses options and calls mertk.training; no logic here."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertk.console import console
from mertk.cli import train_dave

train_app = typer.Typer(
    help="Train the bundled models from the pipelines' Parquet: `mer` (three experts, leave-one-subject-out) and `avvp` (hybrid-attention parser).",
    no_args_is_help=True,
)

_THREADS_HELP = "CPU threads for torch (0: torch's default). On a busy shared machine --threads 1 is often much faster."
_DEVICE_HELP = "auto (cuda when available), cpu or cuda. Runs are deterministic on cpu for a seed."


def _run(function, *args, **kwargs):
    """Call a trainer; turn the errors a user can act on into one line and an exit status."""
    from mertk.models.checkpoint import ForeignCheckpointError
    from mertk.errors import ResumeMismatchError
    from mertk.training.errors import TrainingError

    try:
        return function(*args, **kwargs)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: the training state is saved; run the same command again to resume.")
        raise typer.Exit(130)
    except (ForeignCheckpointError, ResumeMismatchError, TrainingError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@train_app.command("mer")
def mer(
    unimer_dir: Path = typer.Argument(..., help="Output directory of `mertk build-unimer` (unimer_sample.v1 or .v2 shards + manifest)."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, predictions.parquet, checkpoints, confusion.png."),
    protocol: str = typer.Option("5class", "--protocol", help="5class (CASME II: happiness, disgust, surprise, repression, others), 3class (negative, positive, surprise, every corpus' map), megc2019 (the composite, selected by the organisers' list), casme3-3class, casme3-4class or casme3-7class."),
    train_on: str = typer.Option("", "--train-on", help="Cross-corpus protocol: comma-separated datasets to train on (e.g. samm,smic); with --test-on, one fold replaces leave-one-subject-out."),
    test_on: str = typer.Option("", "--test-on", help="Cross-corpus protocol: comma-separated datasets to test on (e.g. casme2)."),
    experts: str = typer.Option("structure,texture,semantics", "--experts", help="Comma-separated subset of structure,texture,semantics."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    hidden: int = typer.Option(64, "--hidden", min=4, help="Width of each expert's feature."),
    expert_loss_weight: float = typer.Option(0.5, "--expert-loss-weight", help="Weight of the auxiliary per-expert cross-entropy."),
    semantic_encoder: str = typer.Option("auto", "--semantic-encoder", help="auto, minilm (packaged all-MiniLM-L6-v2) or region-stats."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed inputs and text embeddings are cached (default RUN/cache)."),
    threads: int = typer.Option(0, "--threads", min=0, help=_THREADS_HELP),
) -> None:
    """Train the three-expert gated MER model under leave-one-subject-out; report UF1/UAR."""
    from mertk.training.mer import MerTrainConfig, train_mer

    config = MerTrainConfig(
        unimer_dir=unimer_dir, out=out, protocol=protocol, experts=[e.strip() for e in experts.split(",") if e.strip()],
        epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, expert_loss_weight=expert_loss_weight,
        semantic_encoder=semantic_encoder, seed=seed, device=device, cache_dir=cache_dir, threads=threads,
        train_on=[d.strip() for d in train_on.split(",") if d.strip()], test_on=[d.strip() for d in test_on.split(",") if d.strip()],
    )  # fmt: skip
    metrics = _run(train_mer, config)
    pooled = metrics["pooled"]
    gates = ", ".join(f"{name} {weight:.2f}" for name, weight in metrics["gate_weights"].items())
    console.print(
        f"[green]done[/green]: {'one cross-corpus fold' if metrics.get('cross_corpus') else str(pooled['folds']) + ' LOSO folds'}, {pooled['samples']} samples: "
        f"UF1 {pooled['uf1']:.4f}, UAR {pooled['uar']:.4f} (gate: {gates}) -> {out}",
        highlight=False,
    )
    for dataset, scores in (metrics.get("per_dataset") or {}).items():
        console.print(f"  {dataset}: UF1 {scores['uf1']:.4f}, UAR {scores['uar']:.4f} ({scores['samples']} samples)", highlight=False)
    composite = metrics.get("composite")
    if composite and composite["missing"]:
        console.print(f"  MEGC2019 list: {composite['found']} of {composite['listed']} listed samples found; missing per dataset: "
                      f"{', '.join(f'{d} {n}' for d, n in composite['missing_by_dataset'].items())}", highlight=False)


@train_app.command("avvp")
def avvp(
    llp: Path = typer.Option(..., "--llp", help="LLP folder: the AVVP_*.csv files and the feature folders."),
    labels: str = typer.Option(..., "--labels", help="Output directory of `mertk migrate-labels` (avvp_pseudo_label.v1), or `none` for weak labels alone."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, predictions.parquet (test split), checkpoints."),
    features: str = typer.Option("han", "--features", help="han (vggish | res152+r2plus1d_18) or clip (CLAP | CLIP)."),
    epochs: int = typer.Option(20, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    d_model: int = typer.Option(128, "--d-model", min=8),
    segment_loss_weight: float = typer.Option(1.0, "--segment-loss-weight", help="Weight of the segment-level BCE on migrated labels."),
    pseudo_target: str = typer.Option("hard", "--pseudo-target", help="hard (migrated labels) or soft (migration scores) segment targets."),
    unimodal: bool = typer.Option(True, "--unimodal/--no-unimodal", help="Train the uni-modal heads (needed by the soft constraint)."),
    tie_weight: float = typer.Option(0.5, "--tie-weight", help="Weight of the uni-modal soft constraint; 0 = ablation."),
    tie_mode: str = typer.Option("pull", "--tie-mode", help="pull: tie fused to uni-modal both ways; leak: only where the fused probability is higher."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed features are cached (default RUN/cache); share it between runs."),
    threads: int = typer.Option(0, "--threads", min=0, help=_THREADS_HELP),
) -> None:
    """Train the hybrid-attention AVVP parser; select on val; report the 10 AVVP numbers for val and test."""
    from mertk.training.avvp import AvvpTrainConfig, train_avvp

    config = AvvpTrainConfig(
        llp=llp, labels=None if labels.lower() == "none" else Path(labels), out=out, features=features, epochs=epochs,
        batch_size=batch_size, lr=lr, d_model=d_model, segment_loss_weight=segment_loss_weight, pseudo_target=pseudo_target,
        unimodal=unimodal, tie_weight=tie_weight, tie_mode=tie_mode, seed=seed, device=device, cache_dir=cache_dir, threads=threads,
    )  # fmt: skip
    metrics = _run(train_avvp, config)
    for split in ("val", "test"):
        segment, event = metrics[split]["segment"], metrics[split]["event"]
        console.print(
            f"{split}: segment Type@AV {segment['type']:.2f} Event@AV {segment['event']:.2f} | "
            f"event Type@AV {event['type']:.2f} Event@AV {event['event']:.2f}",
            highlight=False,
        )
    console.print(f"[green]done[/green]: best epoch {metrics['best_epoch']} -> {out}", highlight=False)


def register(app: typer.Typer) -> None:
    train_dave.register(train_app)
    app.add_typer(train_app, name="train")
