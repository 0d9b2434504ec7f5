"""`mertk train mer|avvp`: parses and checks options, calls mertk.training; no logic here.

Option values are checked here, once, with the owning module's lists (protocols, encoders,
devices, ...): a bad value is one line and exit status 2 before anything is read or trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import typer

from mertk.errors import InputError
from mertk.console import console
from mertk.cli import train_dave, train_generator
from mertk.corpora.llp_features import FEATURE_SETS
from mertk.training.options import DEVICES, EXPERTS, PSEUDO_TARGETS, SEMANTIC_ENCODERS, TEST_INPUTS, TIE_MODES
from mertk.training.mer_protocols import PROTOCOL_NAMES, protocol_help

train_app = typer.Typer(
    help="Train the bundled models from the pipelines' Parquet: `mer` (three experts, leave-one-subject-out) and `avvp` (hybrid-attention parser).",
    no_args_is_help=True,
)

_THREADS_HELP = "CPU threads for torch (0: torch's default). On a busy shared machine --threads 1 is often much faster."
_DEVICE_HELP = "auto (cuda when available), cpu or cuda. Runs are deterministic on cpu for a seed."


# --- option checks (shared with `mertk predict`) -------------------------------------------------
def choice(values: Sequence[str]) -> Callable[[str], str]:
    """A Typer callback accepting one of `values` (the owning module's list)."""

    def check(value: str) -> str:
        if value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    return check


def positive(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value} must be > 0")
    return value


def not_negative(value: float) -> float:
    if not value >= 0:
        raise typer.BadParameter(f"{value} must be >= 0")
    return value


def fraction(value: float) -> float:
    if not 0 <= value < 1:
        raise typer.BadParameter(f"{value} must be in [0, 1)")
    return value


def open_fraction(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"{value} must be in (0, 1)")
    return value


def name_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def expert_list(value: str) -> str:
    names = [e.strip() for e in value.split(",") if e.strip()]
    unknown = [e for e in names if e not in EXPERTS]
    if unknown or not names:
        raise typer.BadParameter(f"takes a comma-separated subset of {','.join(EXPERTS)}; got {value!r}")
    return value


@train_app.command("mer")
def mer(
    unimer_dir: Path = typer.Argument(..., help="Output directory of `mertk build-unimer` (unimer_sample.v1 or .v2 shards + manifest)."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, predictions.parquet, checkpoints, _report.html."),
    protocol: str = typer.Option("5class", "--protocol", callback=choice(PROTOCOL_NAMES),
                                 help=protocol_help() + ". megc2019: the composite, selected and labelled by the organisers' list."),
    train_on: str = typer.Option("", "--train-on", help="Cross-corpus protocol: comma-separated datasets to train on (e.g. samm,smic); with --test-on, one fold replaces leave-one-subject-out."),
    test_on: str = typer.Option("", "--test-on", help="Cross-corpus protocol: comma-separated datasets to test on (e.g. casme2)."),
    experts: str = typer.Option("structure,texture,semantics", "--experts", callback=expert_list, help=f"Comma-separated subset of {','.join(EXPERTS)}."),
    test_inputs: str = typer.Option("video", "--test-inputs", callback=choice(TEST_INPUTS),
                                    help="video: a held-out sample is seen through its video alone. oracle-au: ORACLE, for measuring only: "
                                         "the semantics expert also reads held-out samples' coded AUs and label-constrained caption."),
    align_weight: float = typer.Option(1.0, "--align-weight", callback=not_negative,
                                       help="Weight of the alignment loss pulling the motion-semantics expert toward the sentence embedding "
                                            "of the training sample's caption + AU clauses (0: no alignment, the ablation)."),
    final: bool = typer.Option(False, "--final", help="Train one model on every subject (no held-out fold), for `mertk predict mer`."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", callback=positive, help="Learning rate (> 0)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", callback=not_negative),
    dropout: float = typer.Option(0.3, "--dropout", callback=fraction, help="Dropout rate in [0, 1)."),
    hidden: int = typer.Option(64, "--hidden", min=4, help="Width of each expert's feature."),
    expert_loss_weight: float = typer.Option(0.5, "--expert-loss-weight", callback=not_negative, help="Weight of the auxiliary per-expert cross-entropy."),
    semantic_encoder: str = typer.Option("auto", "--semantic-encoder", callback=choice(SEMANTIC_ENCODERS),
                                         help="Sentence encoder of the alignment targets: auto, minilm (packaged all-MiniLM-L6-v2) "
                                              "or region-stats (none: no alignment)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", callback=choice(DEVICES), help=_DEVICE_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed inputs and text embeddings are cached (default RUN/cache)."),
    threads: int = typer.Option(0, "--threads", min=0, help=_THREADS_HELP),
) -> None:
    """Train the three-expert gated MER model under leave-one-subject-out (or --final); report UF1/UAR."""
    from mertk.training.mer import MerTrainConfig, train_mer

    train_on_names, test_on_names = name_list(train_on), name_list(test_on)
    if bool(train_on_names) != bool(test_on_names) or set(train_on_names) & set(test_on_names):
        raise InputError("the cross-corpus protocol needs --train-on and --test-on, naming different datasets")
    config = MerTrainConfig(
        unimer_dir=unimer_dir, out=out, protocol=protocol, experts=[e.strip() for e in experts.split(",") if e.strip()],
        test_inputs=test_inputs, align_weight=align_weight, final=final, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, dropout=dropout, hidden=hidden, expert_loss_weight=expert_loss_weight,
        semantic_encoder=semantic_encoder, seed=seed, device=device, cache_dir=cache_dir, threads=threads,
        train_on=train_on_names, test_on=test_on_names,
    )  # fmt: skip
    metrics = train_mer(config)
    oracle = " [ORACLE: held-out samples' coded AUs were inputs]" if metrics["test_inputs"]["oracle"] else ""
    if final:
        gates = ", ".join(f"{name} {weight:.2f}" for name, weight in metrics["training"]["gate_weights_on_training_samples"].items())
        console.print(f"[green]done[/green]: final model on {metrics['training']['samples']} samples (gate: {gates}){oracle} -> {out / metrics['checkpoint']}", highlight=False)
        return
    pooled = metrics["pooled"]
    gates = ", ".join(f"{name} {weight:.2f}" for name, weight in metrics["gate_weights"].items())
    console.print(
        f"[green]done[/green]: {'one cross-corpus fold' if metrics['cross_corpus'] else str(pooled['folds']) + ' LOSO folds'}, {pooled['samples']} samples: "
        f"UF1 {pooled['uf1']:.4f}, UAR {pooled['uar']:.4f} (gate: {gates}){oracle} -> {out}",
        highlight=False,
    )
    for dataset, scores in metrics["per_dataset"].items():
        console.print(f"  {dataset}: UF1 {scores['uf1']:.4f}, UAR {scores['uar']:.4f} ({scores['samples']} samples)", highlight=False)
    composite = metrics["composite"]
    if composite and composite["missing"]:
        console.print(f"  MEGC2019 list: {composite['found']} of {composite['listed']} listed samples found; missing per dataset: "
                      f"{', '.join(f'{d} {n}' for d, n in composite['missing_by_dataset'].items())}", highlight=False)


@train_app.command("avvp")
def avvp(
    llp: Path = typer.Option(..., "--llp", help="LLP folder: the AVVP_*.csv files and the feature folders."),
    labels: str = typer.Option(..., "--labels", help="Output directory of `mertk migrate-labels` (avvp_pseudo_label.v1), or `none` for weak labels alone."),
    out: Path = typer.Option(..., "--out", help="Run directory: metrics.json, predictions.parquet (test split), checkpoints, _report.html."),
    features: str = typer.Option("han", "--features", callback=choice(FEATURE_SETS), help="han (vggish | res152+r2plus1d_18) or clip (CLAP | CLIP)."),
    epochs: int = typer.Option(20, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", callback=positive, help="Learning rate (> 0)."),
    d_model: int = typer.Option(128, "--d-model", min=8),
    dropout: float = typer.Option(0.2, "--dropout", callback=fraction, help="Dropout rate in [0, 1)."),
    segment_loss_weight: float = typer.Option(1.0, "--segment-loss-weight", callback=not_negative, help="Weight of the segment-level BCE on migrated labels."),
    pseudo_target: str = typer.Option("hard", "--pseudo-target", callback=choice(PSEUDO_TARGETS), help="hard (migrated labels) or soft (migration scores) segment targets."),
    unimodal: bool = typer.Option(True, "--unimodal/--no-unimodal", help="Train the uni-modal heads (needed by the soft constraint)."),
    tie_weight: float = typer.Option(0.5, "--tie-weight", callback=not_negative, help="Weight of the uni-modal soft constraint; 0 = ablation."),
    tie_mode: str = typer.Option("pull", "--tie-mode", callback=choice(TIE_MODES), help="pull: tie fused to uni-modal both ways; leak: only where the fused probability is higher."),
    threshold: float = typer.Option(0.5, "--threshold", callback=open_fraction, help="Decision threshold on segment and video probabilities, in (0, 1)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", callback=choice(DEVICES), help=_DEVICE_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where packed features are cached (default RUN/cache); share it between runs."),
    threads: int = typer.Option(0, "--threads", min=0, help=_THREADS_HELP),
) -> None:
    """Train the hybrid-attention AVVP parser; select on val; report the 10 AVVP numbers for val and test."""
    from mertk.training.avvp import AvvpTrainConfig, train_avvp

    config = AvvpTrainConfig(
        llp=llp, labels=None if labels.lower() == "none" else Path(labels), out=out, features=features, epochs=epochs,
        batch_size=batch_size, lr=lr, d_model=d_model, dropout=dropout, segment_loss_weight=segment_loss_weight,
        pseudo_target=pseudo_target, unimodal=unimodal, tie_weight=tie_weight, tie_mode=tie_mode, threshold=threshold,
        seed=seed, device=device, cache_dir=cache_dir, threads=threads,
    )  # fmt: skip
    metrics = train_avvp(config)
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
    train_generator.register(train_app)
    app.add_typer(train_app, name="train")
