"""`mertk train generator`: EAR's uni-modal pseudo-label generator on migrated segment labels.

Loss for a batch (z = migrated segment labels (b, 2, 10, 25), hard or soft by `pseudo_target`;
y = the corpus's weak label (b, 25) where it has one; q = the generator's segment probabilities,
Qa, Qv its per-modality video probabilities; BCE averaged over its elements):

    L = seg_w * BCE(q, z)                           every (modality, segment, class) of every video
      + weak_w * BCE(1 - (1 - Qa)(1 - Qv), y)       videos with a weak label only (weak_target union)
        or weak_w * (BCE(Qa, y) + BCE(Qv, y)) / 2   (weak_target each: HAN's uni-modal MIL)

The weak label states that a class occurs in the video in at least one modality, hence the
union of the two modalities' video probabilities (`each` instead asks each modality for the
whole weak label: wrong for single-modality events, but it keeps both classifiers learning when
one modality alone could explain the label); it also rules out every other class, so with
`within_weak` (default) a migrated segment label outside the weak label is set to 0 (k-NN
migration to another corpus does not see that corpus's weak labels). `weak_only` drops the first term: EAR's
ablation, the generator trained on video-level labels alone.

Validation: `val_fraction` of the videos (a permutation fixed by the seed) are held out; after
each epoch their loss is computed and the epoch with the lowest one is kept. metrics.json also
gives the held-out segment F1 against the held-out migrated labels and, where the corpus has
planted truth (`ground_truth_*.csv` of a generated corpus), the 10 AVVP numbers of the held-out
videos' labels (generator probability >= 0.5 within the weak label).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES
from mertk.models.checkpoint import save_model_weights
from mertk.models.generator import MODEL_NAME, GeneratorConfig, PseudoLabelGenerator
from mertk.shards.io import write_bytes_atomic
from mertk.shards.layout import STATE_DIR
from mertk.training.errors import TrainingError
from mertk.training.generator_data import GeneratorData, read_generator_data
from mertk.training.options import PSEUDO_TARGETS
from mertk.training.loop import LoopSpec, deterministic_kernels, evaluation_mode, resolve_device, result_parameters, run_loop, seed_everything
from mertk.training.progress import training_progress

STATE_KIND = "generator"
WEAK_TARGETS = ("union", "each")
CHECKPOINT_NAME = "generator.safetensors"
GROUND_TRUTH_FILES = {"audio": "ground_truth_audio.csv", "visual": "ground_truth_visual.csv"}


@dataclass
class GeneratorTrainConfig:
    labels: list[Path]
    out: Path
    pseudo_target: str = "hard"
    weak_only: bool = False
    weak_target: str = "union"  # union | each
    within_weak: bool = True  # segment targets of classes outside a video's weak label set to 0
    exclude: Path | None = None  # an LLP folder whose val / test videos are left out
    segment_loss_weight: float = 1.0
    weak_loss_weight: float = 1.0
    val_fraction: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 256
    context: int = 3
    dropout: float = 0.2
    threshold: float = 0.5  # for the held-out figures only; labelling LLP sets its own thresholds
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    checkpoint_every: int = 200
    threads: int = 0
    progress: bool = True

    def parameters(self) -> dict[str, Any]:
        data = result_parameters(self, ("labels", "out", "exclude"))
        data["labels"] = [str(path) for path in self.labels]
        data["exclude"] = str(self.exclude) if self.exclude is not None else None
        return data

    def check(self) -> None:
        """Option values the trainer cannot use: one line each (the CLI checks them first)."""
        if self.pseudo_target not in PSEUDO_TARGETS:
            raise TrainingError(f"--pseudo-target must be hard or soft, not {self.pseudo_target!r}")
        if self.weak_target not in WEAK_TARGETS:
            raise TrainingError(f"--weak-target must be union or each, not {self.weak_target!r}")
        if not 0 < self.val_fraction < 1:
            raise TrainingError(f"--val-fraction must be between 0 and 1 (exclusive), not {self.val_fraction}")
        if self.lr <= 0:
            raise TrainingError(f"--lr must be > 0, not {self.lr}")
        if self.segment_loss_weight < 0 or self.weak_loss_weight < 0:
            raise TrainingError("--segment-loss-weight and --weak-loss-weight must be >= 0")
        if not self.weak_only and self.segment_loss_weight == 0 and self.weak_loss_weight == 0:
            raise TrainingError("both loss weights are 0: nothing to train on")


def split_videos(videos: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows), each sorted; a permutation fixed by the seed; at least one of each."""
    if videos < 2:
        raise TrainingError(f"{videos} usable video: training and a held-out part need at least 2")
    order = torch.randperm(videos, generator=torch.Generator().manual_seed(seed)).numpy()
    held = min(max(1, round(videos * val_fraction)), videos - 1)
    return np.sort(order[held:]), np.sort(order[:held])


def _statistics(array: np.ndarray, rows: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the rows' segments, float64, in chunks (the array may be a memmap)."""
    total = np.zeros(array.shape[2]); squares = np.zeros(array.shape[2]); count = 0  # fmt: skip
    for start in range(0, len(rows), chunk):
        block = np.asarray(array[rows[start : start + chunk]], dtype=np.float64).reshape(-1, array.shape[2])
        total += block.sum(axis=0); squares += (block**2).sum(axis=0); count += len(block)  # fmt: skip
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))


def generator_loss(output, batch: dict[str, torch.Tensor], config: GeneratorTrainConfig) -> torch.Tensor:
    """The loss of the module docstring (`batch`: target, weak, has_weak)."""
    loss = output.segment_logits_bmtc.new_zeros(())
    if not config.weak_only and config.segment_loss_weight > 0:
        loss = loss + config.segment_loss_weight * F.binary_cross_entropy_with_logits(output.segment_logits_bmtc, batch["target"])
    has = batch["has_weak"]
    if config.weak_loss_weight > 0 and bool(has.any()):
        if config.weak_target == "union":
            per_video = F.binary_cross_entropy(output.video_union_bc(), batch["weak"], reduction="none").mean(dim=1)
        else:
            weak_bmc = batch["weak"][:, None, :].expand_as(output.video_bmc)
            per_video = F.binary_cross_entropy(output.video_bmc, weak_bmc, reduction="none").mean(dim=(1, 2))
        loss = loss + config.weak_loss_weight * (per_video * has).sum() / has.sum()
    return loss


@dataclass
class _Batches:
    data: GeneratorData
    target: np.ndarray
    device: torch.device

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        rows = np.sort(rows)  # sequential reads from a memmap
        batch = {
            "audio": np.asarray(self.data.audio_v_t_d[rows]),
            "visual": np.asarray(self.data.visual_v_t_d[rows]),
            "target": self.target[rows],
            "weak": self.data.weak_v_c[rows],
            "has_weak": self.data.has_weak_v[rows].astype(np.float32),
        }
        return {name: torch.from_numpy(value).to(self.device) for name, value in batch.items()}


def predict_probabilities(model: PseudoLabelGenerator, audio_v_t_d: np.ndarray, visual_v_t_d: np.ndarray,
                          device: torch.device, batch_size: int = 256) -> np.ndarray:
    """(videos, 2, 10, 25) float32 segment probabilities."""
    parts = []
    with evaluation_mode(model):
        for start in range(0, len(audio_v_t_d), batch_size):
            audio = torch.from_numpy(np.asarray(audio_v_t_d[start : start + batch_size], dtype=np.float32)).to(device)
            visual = torch.from_numpy(np.asarray(visual_v_t_d[start : start + batch_size], dtype=np.float32)).to(device)
            parts.append(model(audio, visual).segment_bmtc.cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 2, 10, len(LLP_CLASSES)), dtype=np.float32)


def _micro_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = float((predicted & truth).sum())
    denominator = float(predicted.sum() + truth.sum())
    return round(100.0 * 2 * tp / denominator, 2) if denominator else 100.0


def _held_out_figures(data: GeneratorData, rows: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """Segment F1 against the held-out migrated labels; AVVP numbers against planted truth if any."""
    predicted = probabilities >= threshold
    within = predicted & (data.weak_v_c[rows][:, None, None, :] > 0)
    figures: dict[str, Any] = {"videos": int(len(rows))}
    migrated = data.hard_v_m_t_c[rows] > 0
    figures["segment_f1_vs_migrated"] = {m: _micro_f1(predicted[:, i], migrated[:, i]) for i, m in enumerate(MODALITIES)}
    has_weak = data.has_weak_v[rows][:, None, None, None]
    figures["truth"] = _truth_scores(data, rows, np.where(has_weak, within, predicted))
    return figures


def _truth_scores(data: GeneratorData, rows: np.ndarray, predicted_v_m_t_c: np.ndarray) -> dict[str, Any] | None:
    from mertk.corpora.llp_annotations import read_dense_labels
    from mertk.metrics.avvp import avvp_scores

    corpora = sorted({data.corpora[i] for i in rows})
    if len(corpora) != 1:
        return None  # several corpora: no single truth to score against
    files = {m: Path(corpora[0]) / name for m, name in GROUND_TRUTH_FILES.items()}
    if not all(path.is_file() for path in files.values()):
        return None
    filenames = [data.filenames[i] for i in rows]
    dense = read_dense_labels(files["audio"], files["visual"], filenames)
    audio, visual = (predicted_v_m_t_c[:, i].transpose(0, 2, 1) for i in range(2))
    return {"source": f"{files['audio'].name} / {files['visual'].name}", **avvp_scores(audio, visual, dense.audio_v_c_t, dense.visual_v_c_t).to_dict()}


def train_generator(config: GeneratorTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train, select on the held-out part; write RUN's outputs; return metrics (as in metrics.json)."""
    config.check()
    device = resolve_device(config.device)
    with deterministic_kernels(device, config.threads):
        return _train_generator(config, device, after_step)


def _train_generator(config: GeneratorTrainConfig, device: torch.device, after_step) -> dict[str, Any]:
    out = Path(config.out)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else out / "cache"
    data = read_generator_data(config.labels, cache_dir, config.exclude, progress=config.progress)
    if config.weak_only and not data.has_weak_v.any():
        raise TrainingError(f"--weak-only: no video of {', '.join(s.corpus for s in data.sources)} has a weak label (no AVVP_*.csv there)")
    train_rows, held_rows = split_videos(len(data.filenames), config.val_fraction, config.seed)

    seed_everything(config.seed)
    model_config = GeneratorConfig(
        features=data.features, parts=data.parts(), audio_dim=data.dims()["audio"], visual_dim=data.dims()["visual"],
        classes=list(LLP_CLASSES), hidden=config.hidden, context=config.context, dropout=config.dropout,
        training={
            "labels": [source.__dict__ for source in data.sources], "pseudo_target": "none (weak only)" if config.weak_only else config.pseudo_target,
            "weak_labels": int(data.has_weak_v.sum()), "videos": {"train": int(len(train_rows)), "held_out": int(len(held_rows))},
            "excluded_evaluation_videos": data.excluded, "seed": config.seed, "epochs": config.epochs,
        },
    )  # fmt: skip
    model = PseudoLabelGenerator(model_config)
    model.audio.set_input_statistics(*_statistics(data.audio_v_t_d, train_rows))
    model.visual.set_input_statistics(*_statistics(data.visual_v_t_d, train_rows))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    target = data.hard_v_m_t_c if config.pseudo_target == "hard" else data.soft_v_m_t_c
    if config.within_weak:  # the weak label rules a class out of every segment of both modalities
        outside = (data.weak_v_c == 0) & data.has_weak_v[:, None]
        target = np.where(outside[:, None, None, :], np.float32(0), target)
    batches = _Batches(data, target, device)

    def step(batch) -> float:
        loss = generator_loss(model(batch["audio"], batch["visual"]), batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def held_out_loss() -> float:
        total, count = 0.0, 0
        with evaluation_mode(model):
            for start in range(0, len(held_rows), 256):
                batch = batches(held_rows[start : start + 256])
                total += float(generator_loss(model(batch["audio"], batch["visual"]), batch, config)) * len(batch["audio"])
                count += len(batch["audio"])
        return total / count

    def end_of_epoch(epoch: int) -> dict[str, float]:
        loss = held_out_loss()
        return {"val_loss": round(loss, 6), "val_select": -loss}

    fingerprint = {"parameters": config.parameters(), "data": data.key, "labels": [s.manifest_sha256 for s in data.sources]}
    spec = LoopSpec(
        model=model, optimizer=optimizer, n_items=len(train_rows), batch_size=config.batch_size, epochs=config.epochs,
        seed=config.seed, fetch_batch=lambda positions: batches(train_rows[positions.numpy()]), train_step=step,
        end_of_epoch=end_of_epoch, select_on="val_select", metric_label="val_loss", state_path=out / STATE_DIR / "train.pt",
        state_kind=STATE_KIND, fingerprint=fingerprint, checkpoint_every=config.checkpoint_every, after_step=after_step,
    )  # fmt: skip
    with training_progress(config.progress) as progress:
        progress.set_description(f"train generator ({'weak only' if config.weak_only else config.pseudo_target + ' labels'})")
        loop = run_loop(spec, progress)

    probabilities = predict_probabilities(model, data.audio_v_t_d[held_rows], data.visual_v_t_d[held_rows], device)
    held_out = _held_out_figures(data, held_rows, probabilities, config.threshold)
    checkpoint = save_model_weights(out / "checkpoints" / CHECKPOINT_NAME, model.state_dict(), model=MODEL_NAME, config=model_config.to_dict())
    seconds = loop.data_seconds + loop.compute_seconds
    metrics = {
        "task": "generator",
        "features": model_config.features_text(),
        "checkpoint": str(checkpoint),
        "training_data": model_config.training,
        "held_out": held_out,
        "best_epoch": loop.best_epoch,
        "history": [{k: v for k, v in row.items() if k != "val_select"} for row in loop.history],
        "rejected": [r.__dict__ for r in data.rejections],
        "parameters": config.parameters(),
        "device": str(device),
        "throughput": {
            "samples_per_second": round(loop.samples_seen / seconds, 1) if seconds > 0 else None,
            "data_wait_share": round(loop.data_seconds / seconds, 4) if seconds > 0 else None,
            "note": "training steps of this process only (validation excluded)",
        },
    }
    write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    return metrics
