"""`mertk train dave`: ESG-Net (or its ablations) on UnAV-100, scored with the field's mAP.

Loss for a batch (points of all pyramid stages pooled; targets from
mertk.models.temporal_points.assign_targets; N+ = number of positive points, at least 1):

    L = focal(class logits, class targets) / N+          sigmoid focal loss, alpha 0.25, gamma 2,
                                                         over the valid points of every stage
      + reg_w * DIoU(offsets, offset targets) / N+       positive points only
      + [ESI] esi_w * mean over stages of BCE(video logits of the stage, classes of the video)

DIoU of two segments around one point, given as (distance to start, to end): 1 - IoU +
(distance between their centres / length of the smallest segment enclosing both)**2.

Prediction: sigmoid scores of every (point, class), the best `candidates` per video, offsets
turned into seconds (step centre 0.48 s + 0.32 s per step), class-wise Gaussian soft-NMS, at most
`max_segments` segments per video; classes absent from the annotation file are never predicted.

Model selection: after each epoch the validation split is scored (average mAP over tIoU
0.1..0.9, mertk.metrics.detection); the epoch with the highest value is kept. Test figures come
from that epoch; every test video counts, a rejected one (unusable features) predicts nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from mertk.corpora.unav100 import NUM_CLASSES
from mertk.metrics.dave_evaluation import truth_events
from mertk.metrics.detection import DetectionScores, EventTable, detection_scores
from mertk.models.checkpoint import save_model_weights
from mertk.models.esg_net import EXPERT_NAMES, MODEL_NAME, EsgNet, EsgNetConfig, EsgNetOutput
from mertk.models.temporal_points import PointGrid, assign_targets, decode_segments, point_grid
from mertk.shards.io import write_bytes_atomic, write_shard
from mertk.shards.layout import STATE_DIR
from mertk.shards.manifest import write_single_output_manifest
from mertk.shards.schema import load_schema
from mertk.training.dave_data import DaveBatch, PackedUnav, feature_statistics, make_batch, pack_unav
from mertk.training.errors import TrainingError
from mertk.training.loop import LoopSpec, deterministic_kernels, evaluation_mode, resolve_device, result_parameters, run_loop, seed_everything
from mertk.training.progress import training_progress

PREDICTION_SCHEMA = load_schema("dave_prediction", 1)
STATE_KIND = "dave"
PREDICTIONS_NAME = "predictions.parquet"
METRICS_NAME = "metrics.json"
CHECKPOINT_PATH = Path("checkpoints") / "esg_net.safetensors"


@dataclass
class DaveTrainConfig:
    unav: Path
    out: Path
    esi: bool = True
    mode: bool = True
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    d_model: int = 64
    heads: int = 4
    levels: int = 5
    mode_layers: int = 2
    dropout: float = 0.1
    esi_loss_weight: float = 1.0
    regression_loss_weight: float = 1.0
    candidates: int = 200
    max_segments: int = 100
    nms_sigma: float = 0.5
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    checkpoint_every: int = 200
    threads: int = 0
    progress: bool = True

    def parameters(self) -> dict[str, Any]:
        return result_parameters(self, ("unav", "out"))

    @property
    def variant(self) -> str:
        return {(True, True): "esg_net", (False, True): "no_esi", (True, False): "no_mode", (False, False): "baseline"}[(self.esi, self.mode)]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sum of the focal loss over all elements."""
    probability = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * cross_entropy * (1 - p_t) ** gamma).sum()


def diou_loss(predicted_n2: torch.Tensor, target_n2: torch.Tensor) -> torch.Tensor:
    """Sum of 1 - DIoU over segments given as (distance to start, distance to end) from a shared point."""
    pred_start, pred_end = predicted_n2[:, 0], predicted_n2[:, 1]
    true_start, true_end = target_n2[:, 0], target_n2[:, 1]
    intersection = (torch.minimum(pred_start, true_start) + torch.minimum(pred_end, true_end)).clamp_min(0)
    union = pred_start + pred_end + true_start + true_end - intersection
    iou = intersection / union.clamp_min(1e-8)
    enclosing = torch.maximum(pred_start, true_start) + torch.maximum(pred_end, true_end)
    centre_gap = 0.5 * ((pred_end - pred_start) - (true_end - true_start))
    return (1 - iou + (centre_gap / enclosing.clamp_min(1e-8)) ** 2).sum()


def detection_loss(output: EsgNetOutput, batch: DaveBatch, grid: PointGrid, config: DaveTrainConfig) -> torch.Tensor:
    """The loss of the module docstring."""
    class_target, offset_target, positive = assign_targets(grid, batch.segments_bg2, batch.labels_bg, batch.valid_bg, NUM_CLASSES)
    valid = torch.cat(output.masks, dim=1)
    logits = torch.cat(output.class_logits, dim=1)
    offsets = torch.cat(output.offsets, dim=1)
    positives = positive & valid
    normaliser = positives.sum().clamp_min(1).to(logits.dtype)
    loss = sigmoid_focal_loss(logits[valid], class_target[valid]) / normaliser
    if bool(positives.any()):
        loss = loss + config.regression_loss_weight * diou_loss(offsets[positives], offset_target[positives]) / normaliser
    if output.video_logits and config.esi_loss_weight > 0:
        stage_losses = [F.binary_cross_entropy_with_logits(stage, batch.video_labels_bc) for stage in output.video_logits]
        loss = loss + config.esi_loss_weight * torch.stack(stage_losses).mean()
    return loss


class _Grids:
    """Point grids by padded length (a handful of lengths occur)."""

    def __init__(self, config: EsgNetConfig, device: torch.device):
        self._config, self._device, self._grids = config, device, {}

    def __call__(self, steps: int) -> PointGrid:
        if steps not in self._grids:
            self._grids[steps] = point_grid(steps, self._config.regression_ranges, self._device)
        return self._grids[steps]


@dataclass
class SplitPrediction:
    rows: list[dict[str, Any]]
    predicted: EventTable
    gate_sums: np.ndarray | None  # (layers, experts) sums of gate weights over valid steps
    gate_steps: int


def predict_videos(model: EsgNet, packed: PackedUnav, videos: np.ndarray, grids: _Grids, device: torch.device, config: DaveTrainConfig) -> SplitPrediction:
    """Segments of the given videos (rows in the dave_prediction layout), plus MoDE gate sums."""
    known = torch.zeros(NUM_CLASSES, dtype=torch.bool, device=device)
    known[list(packed.annotations.class_names)] = True
    multiple = 2 ** (model.config.levels - 1)
    rows: list[dict[str, Any]] = []
    gate_sums, gate_steps = None, 0
    with evaluation_mode(model):
        for low in range(0, len(videos), config.batch_size):
            chunk = videos[low : low + config.batch_size]
            batch = make_batch(packed, chunk, multiple).to(device)
            output = model(batch.visual_btd, batch.audio_btd, batch.mask_bt)
            logits = [stage.masked_fill(~known, float("-inf")) for stage in output.class_logits]
            segments = decode_segments(
                logits, output.offsets, output.masks, grids(batch.mask_bt.shape[1]), batch.durations_b,
                candidates=config.candidates, max_segments=config.max_segments, sigma=config.nms_sigma,
            )  # fmt: skip
            if output.gate_weights:
                sums = torch.stack([gate.sum(0) for gate in output.gate_weights]).cpu().numpy().astype(np.float64)
                gate_sums = sums if gate_sums is None else gate_sums + sums
                gate_steps += int(output.gate_weights[0].shape[0])
            for video, label, start, end, score in zip(*(t.cpu().tolist() for t in (segments.video_n, segments.label_n, segments.start_n, segments.end_n, segments.score_n))):
                rows.append({
                    "video_id": packed.video_ids[chunk[video]], "label_id": int(label), "label": packed.annotations.class_names[int(label)],
                    "start": float(start), "end": float(end), "score": float(score),
                })  # fmt: skip
    columns = {name: [row[name] for row in rows] for name in ("video_id", "label_id", "start", "end", "score")}
    predicted = EventTable.from_columns(columns["video_id"], columns["label_id"], columns["start"], columns["end"], columns["score"])
    return SplitPrediction(rows, predicted, gate_sums, gate_steps)


def _gate_report(prediction: SplitPrediction) -> dict[str, dict[str, float]]:
    if prediction.gate_sums is None or prediction.gate_steps == 0:
        return {}
    means = prediction.gate_sums / prediction.gate_steps
    return {f"layer_{i + 1}": {name: round(float(w), 4) for name, w in zip(EXPERT_NAMES, layer)} for i, layer in enumerate(means)}


def score_split(model, packed: PackedUnav, split: str, grids, device, config) -> tuple[DetectionScores, SplitPrediction]:
    prediction = predict_videos(model, packed, packed.rows_of(split), grids, device, config)
    truth = truth_events(packed.annotations.split(split))
    return detection_scores(truth, prediction.predicted), prediction


def _scores_dict(scores: DetectionScores, videos: int) -> dict[str, Any]:
    figures = scores.to_dict()
    return {"map": {k: round(v, 4) for k, v in figures["map"].items()}, "average_map": round(figures["average_map"], 4), "videos": videos}


def train_dave(config: DaveTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train, select on validation, score test; write RUN's outputs; return metrics (as in metrics.json)."""
    with deterministic_kernels(resolve_device(config.device), config.threads):
        return _train_dave(config, after_step)


def _train_dave(config: DaveTrainConfig, after_step: Callable[[int], None] | None) -> dict[str, Any]:
    device = resolve_device(config.device)
    out = Path(config.out)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else out / "cache"
    packed = pack_unav(config.unav, cache_dir, progress=config.progress)
    train_rows, val_rows, test_rows = (packed.rows_of(split) for split in ("train", "validation", "test"))
    if len(train_rows) == 0:
        raise TrainingError(f"{config.unav}: no train video with usable features")
    if len(val_rows) == 0 or len(test_rows) == 0:
        raise TrainingError(f"{config.unav}: model selection and testing need validation and test videos with features (found {len(val_rows)}, {len(test_rows)})")

    seed_everything(config.seed)
    model_config = EsgNetConfig(
        num_classes=NUM_CLASSES, d_model=config.d_model, heads=config.heads, levels=config.levels, mode_layers=config.mode_layers,
        dropout=config.dropout, esi=config.esi, mode=config.mode,
    )  # fmt: skip
    model = EsgNet(model_config)
    model.set_input_statistics(*feature_statistics(packed, train_rows))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    grids = _Grids(model_config, device)
    multiple = 2 ** (config.levels - 1)

    def fetch(positions: torch.Tensor) -> DaveBatch:
        return make_batch(packed, train_rows[np.sort(positions.numpy())], multiple).to(device)

    def step(batch: DaveBatch) -> float:
        output = model(batch.visual_btd, batch.audio_btd, batch.mask_bt)
        loss = detection_loss(output, batch, grids(batch.mask_bt.shape[1]), config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    def end_of_epoch(epoch: int) -> dict[str, float]:
        scores, _ = score_split(model, packed, "validation", grids, device, config)
        return {"val_average_map": round(100 * scores.average_map, 4)}

    fingerprint = {"parameters": config.parameters(), "data": packed.key}
    spec = LoopSpec(
        model=model, optimizer=optimizer, n_items=len(train_rows), batch_size=config.batch_size, epochs=config.epochs,
        seed=config.seed, fetch_batch=fetch, train_step=step, end_of_epoch=end_of_epoch, select_on="val_average_map",
        metric_label="val_average_map", state_path=out / STATE_DIR / "train.pt", state_kind=STATE_KIND,
        fingerprint=fingerprint, checkpoint_every=config.checkpoint_every, after_step=after_step,
    )  # fmt: skip
    with training_progress(config.progress) as progress:
        progress.set_description(f"train dave ({config.variant})")
        loop = run_loop(spec, progress)

    val_scores, _ = score_split(model, packed, "validation", grids, device, config)
    test_scores, test_prediction = score_split(model, packed, "test", grids, device, config)
    save_model_weights(out / CHECKPOINT_PATH, model.state_dict(), model=MODEL_NAME, config=model_config.to_dict())
    predictions_path = out / PREDICTIONS_NAME
    write_shard(PREDICTION_SCHEMA.table_from_rows(test_prediction.rows), predictions_path, PREDICTION_SCHEMA)
    seconds = loop.data_seconds + loop.compute_seconds
    names = packed.annotations.class_names
    metrics = {
        "task": "dave",
        "variant": config.variant,
        "val": _scores_dict(val_scores, len(packed.annotations.split("validation"))),
        "test": _scores_dict(test_scores, len(packed.annotations.split("test"))),
        "test_per_class_ap": {names[c]: round(ap, 4) for c, ap in test_scores.per_class_average().items()},
        "best_epoch": loop.best_epoch,
        "history": loop.history,
        "gate_weights": _gate_report(test_prediction),
        "esi_gates": model.esi_gate_values(),
        "videos": {"train": int(len(train_rows)), "val": int(len(val_rows)), "test": int(len(test_rows)), "rejected": len(packed.rejections)},
        "rejections": [{"video": r.input, "reason": r.reason, "file": r.file} for r in packed.rejections],
        "feature_alignment": packed.alignments,
        "parameters": config.parameters(),
        "device": str(device),
        "throughput": {
            "videos_per_second": round(loop.samples_seen / seconds, 2) if seconds > 0 else None,
            "data_wait_share": round(loop.data_seconds / seconds, 4) if seconds > 0 else None,
            "note": "training steps of this process only (validation excluded)",
        },
    }  # fmt: skip
    test_videos = len(packed.annotations.split("test"))
    write_single_output_manifest(
        out, PREDICTION_SCHEMA, predictions_path, command="mertk train dave",
        parameters={**config.parameters(), "unav": str(config.unav), "split": "test"},
        inputs_seen=test_videos, inputs_written=int(len(test_rows)), rows_written=len(test_prediction.rows),
        rejections=[r for r in packed.rejections if packed.annotations.videos[r.input].subset == "test"],
        summary={"test": metrics["test"], "best_epoch": loop.best_epoch, "variant": config.variant},
        extra_versions=("torch",),
    )  # fmt: skip
    write_bytes_atomic(out / METRICS_NAME, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    return metrics
