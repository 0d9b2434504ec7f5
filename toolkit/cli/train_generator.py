"""`mertk train generator`: parses and checks options, calls mertk.training.generator; no logic here."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mertk.console import console

_THREADS_HELP = "CPU threads for torch (0: torch's default). On a busy shared machine --threads 1 is often much faster."


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be > 0, not {value}")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise typer.BadParameter(f"must be >= 0, not {value}")
    return value


def _fraction(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), not {value}")
    return value


def _dropout(value: float) -> float:
    if not 0 <= value < 1:
        raise typer.BadParameter(f"must be in [0, 1), not {value}")
    return value


def generator(
    labels: List[Path] = typer.Option(..., "--labels", help="avvp_pseudo_label directory of `mertk migrate-labels` (OUT/avvp_pseudo or its --target output); repeat for several corpora. Features and corpus come from its manifest."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, checkpoints/generator.safetensors."),
    pseudo_target: str = typer.Option("hard", "--pseudo-target", help="hard (migrated labels) or soft (migration scores) segment targets."),
    weak_only: bool = typer.Option(False, "--weak-only", help="Train on the corpus's video-level weak labels alone (EAR's ablation); the segment labels are not used."),
    weak_target: str = typer.Option("union", "--weak-target", help="union: the weak label against P(class in audio or visual); each: against each modality's video probability (HAN's uni-modal MIL)."),
    within_weak: bool = typer.Option(True, "--within-weak/--beyond-weak", help="Zero the segment targets of classes outside a video's weak label (where it has one)."),
    exclude: Optional[Path] = typer.Option(None, "--exclude", help="LLP folder whose val and test videos are left out of training (a pre-training corpus sharing videos with the evaluation set)."),
    segment_loss_weight: float = typer.Option(1.0, "--segment-loss-weight", callback=_non_negative, help="Weight of the segment BCE on migrated labels."),
    weak_loss_weight: float = typer.Option(1.0, "--weak-loss-weight", callback=_non_negative, help="Weight of the video-level BCE on weak labels (where the corpus has them)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", callback=_fraction, help="Share of videos held out for model selection."),
    epochs: int = typer.Option(20, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", callback=_positive),
    hidden: int = typer.Option(256, "--hidden", min=4, help="Width of each modality's classifier."),
    context: int = typer.Option(3, "--context", min=1, help="Segments seen by the temporal convolution (odd; 1 = none)."),
    dropout: float = typer.Option(0.2, "--dropout", callback=_dropout),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu or cuda. Runs are deterministic on cpu for a seed."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed features are cached (default RUN/cache)."),
    threads: int = typer.Option(0, "--threads", min=0, help=_THREADS_HELP),
) -> None:
    """Train EAR's uni-modal pseudo-label generator (audio and visual segment classifiers) on migrated labels.

    Example: `mertk train generator --labels out_t/avvp_pseudo/target --exclude sample_data/llp --out gen`,
    then `mertk migrate-labels --llp sample_data/llp --generator gen/checkpoints/generator.safetensors`.
    """
    from mertk.training.generator import WEAK_TARGETS, GeneratorTrainConfig, train_generator
    from mertk.training.options import PSEUDO_TARGETS

    if pseudo_target not in PSEUDO_TARGETS:
        raise typer.BadParameter(f"must be hard or soft, not {pseudo_target!r}", param_hint="--pseudo-target")
    if weak_target not in WEAK_TARGETS:
        raise typer.BadParameter(f"must be union or each, not {weak_target!r}", param_hint="--weak-target")
    if context % 2 == 0:
        raise typer.BadParameter(f"must be odd (centred on the segment), not {context}", param_hint="--context")
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"must be auto, cpu or cuda, not {device!r}", param_hint="--device")
    config = GeneratorTrainConfig(
        labels=list(labels), out=out, pseudo_target=pseudo_target, weak_only=weak_only, weak_target=weak_target, within_weak=within_weak, exclude=exclude,
        segment_loss_weight=segment_loss_weight, weak_loss_weight=weak_loss_weight, val_fraction=val_fraction,
        epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, context=context, dropout=dropout, seed=seed,
        device=device, cache_dir=cache_dir, threads=threads,
    )  # fmt: skip
    metrics = train_generator(config)  # failures: one line each, from mertk.cli.failures
    held = metrics["held_out"]
    f1 = held["segment_f1_vs_migrated"]
    line = f"held-out {held['videos']} videos: segment F1 vs migrated labels audio {f1['audio']:.1f}, visual {f1['visual']:.1f}"
    if held.get("truth"):
        segment = held["truth"]["segment"]
        line += f"; vs planted truth segment Type@AV {segment['type']:.1f} Event@AV {segment['event']:.1f}"
    console.print(line, highlight=False, soft_wrap=True)
    console.print(f"[green]done[/green]: best epoch {metrics['best_epoch']} -> {metrics['checkpoint']}", highlight=False, soft_wrap=True)


def register(train_app: typer.Typer) -> None:
    train_app.command("generator")(generator)
