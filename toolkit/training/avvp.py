"""`mertk train avvp`: the hybrid-attention parser from weak labels (+ migrated segment labels).

Loss for a batch (y = weak label (b, 25); z = migrated segment labels (b, 2, 10, 25); p, P = fused
segment / video probabilities; q, Q = uni-modal ones; BCE averaged over its elements):

    L = BCE(P, y)                                        video level, weak labels
      + seg_w * BCE_m(p, z)                              segment level, migrated labels (*)
      + [uni-modal heads]  BCE(Q, y) + seg_w * BCE_m(q, z)
      + [uni-modal heads]  tie_w * BCE_y(p, stopgrad(q)) the soft constraint

(*) BCE_m: over the videos that have pseudo-label rows only; with `--labels none` the term is
absent. BCE_y: over the (modality, segment, class) entries whose class is in the video's weak
label. The soft constraint (our reading of EAR's uni-modal constraint) pulls each fused segment
probability toward the uni-modal head's probability for the same modality, which sees that
modality alone and so cannot borrow an event from the other stream; the uni-modal side is not
pulled (stop-gradient), so the constraint cannot drag the uni-modal heads toward the fusion's
cross-modal leaks. `tie_w = 0` (or `--no-unimodal`) is the ablation.

Prediction: class c is active in segment t of modality m when p[m, t, c] >= threshold and the
video probability P[c] >= threshold (the usual HAN decision rule); threshold 0.5.

Model selection: after each epoch the val split is scored with mertk.metrics.avvp; the epoch with
the highest mean of segment-level Type@AV and Event@AV is kept. Test figures come from that epoch.

Output directory RUN: metrics.json, predictions.parquet (test split, avvp_prediction.v1) and
_manifest.json, _report.html (learning curves, the 10 numbers, per-class F1 on test),
checkpoints/parser.safetensors, _state/train.pt (resume), _throughput.json (timing: the one file
that differs between identical runs), cache/.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mertk.models.avvp_parser import MODEL_NAME, HybridAttentionParser, ParserConfig
from mertk.models.checkpoint import save_model_weights
from mertk.shards.io import write_bytes_atomic, write_shard
from mertk.shards.layout import REPORT_NAME, STATE_DIR
from mertk.shards.manifest import write_single_output_manifest
from mertk.shards.schema import load_schema
from mertk.training.avvp_data import DenseTruth, PackedLlp, PseudoLabels, dense_truth, pack_llp, read_pseudo_labels
from mertk.training.errors import TrainingError
from mertk.training.loop import THROUGHPUT_NAME, LoopSpec, deterministic_kernels, evaluation_mode, resolve_device, result_parameters, run_loop, seed_everything
from mertk.training.progress import training_progress
from mertk.training.options import PSEUDO_TARGETS, TIE_MODES
from mertk.training.run_report import write_avvp_report

PREDICTION_SCHEMA = load_schema("avvp_prediction", 1)
STATE_KIND = "avvp"


@dataclass
class AvvpTrainConfig:
    llp: Path
    labels: Path | None  # None: weak labels only
    out: Path
    features: str = "han"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    d_model: int = 128
    heads: int = 4
    layers: int = 1
    dropout: float = 0.2
    segment_loss_weight: float = 1.0
    pseudo_target: str = "hard"
    unimodal: bool = True
    tie_weight: float = 0.5
    tie_mode: str = "pull"  # pull: both directions; leak: only where fused > uni-modal
    threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    checkpoint_every: int = 200
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    progress: bool = True

    def parameters(self) -> dict[str, Any]:
        data = result_parameters(self, ("llp", "out"))
        data["labels"] = str(self.labels) if self.labels is not None else "none"
        return data


def _bce(p: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    losses = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    if mask is None:
        return losses.mean()
    mask = mask.expand_as(losses).to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


def parser_loss(output, weak_bc: torch.Tensor, migrated_bmtc: torch.Tensor | None, has_b: torch.Tensor | None, config: AvvpTrainConfig) -> torch.Tensor:
    """The loss of the module docstring."""
    loss = _bce(output.video_bc, weak_bc)
    segment_mask = has_b[:, None, None, None] if has_b is not None else None
    if migrated_bmtc is not None and config.segment_loss_weight > 0:
        loss = loss + config.segment_loss_weight * _bce(output.segment_bmtc, migrated_bmtc, segment_mask)
    if output.unimodal_segment_bmtc is not None:
        loss = loss + _bce(output.unimodal_video_bc, weak_bc)
        if migrated_bmtc is not None and config.segment_loss_weight > 0:
            loss = loss + config.segment_loss_weight * _bce(output.unimodal_segment_bmtc, migrated_bmtc, segment_mask)
        if config.tie_weight > 0:
            tied = weak_bc[:, None, None, :] > 0
            unimodal = output.unimodal_segment_bmtc.detach()
            if config.tie_mode == "leak":  # only where the fusion claims more than the modality alone supports
                tied = tied & (output.segment_bmtc.detach() > unimodal)
            loss = loss + config.tie_weight * _bce(output.segment_bmtc, unimodal, tied)
    return loss


def predict_matrices(model: HybridAttentionParser, packed: PackedLlp, rows: np.ndarray, device: torch.device, threshold: float, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (videos, 25, 10) bool matrices for audio and visual."""
    audio_parts, visual_parts = [], []
    with evaluation_mode(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            output = model(torch.from_numpy(np.asarray(packed.audio_v_t_d[chunk])).to(device), torch.from_numpy(np.asarray(packed.visual_v_t_d[chunk])).to(device))
            active = (output.segment_bmtc >= threshold) & (output.video_bc[:, None, None, :] >= threshold)
            active = active.permute(0, 1, 3, 2).cpu().numpy()  # (b, m, c, t)
            audio_parts.append(active[:, 0])
            visual_parts.append(active[:, 1])
    return np.concatenate(audio_parts), np.concatenate(visual_parts)


def _score(model, packed, truth: DenseTruth, device, threshold):
    from mertk.metrics.avvp import avvp_scores

    audio, visual = predict_matrices(model, packed, truth.rows, device, threshold)
    return avvp_scores(audio, visual, truth.audio_v_c_t, truth.visual_v_c_t), audio, visual


def _feature_statistics(packed: PackedLlp, rows: np.ndarray, chunk: int = 512):
    """Per-dimension mean and std of the train videos' segment features, in float64, chunked (memmaps)."""
    statistics = []
    for array in (packed.audio_v_t_d, packed.visual_v_t_d):
        total = np.zeros(array.shape[2]); squares = np.zeros(array.shape[2]); count = 0  # fmt: skip
        for start in range(0, len(rows), chunk):
            block = np.asarray(array[rows[start : start + chunk]], dtype=np.float64).reshape(-1, array.shape[2])
            total += block.sum(axis=0); squares += (block**2).sum(axis=0); count += len(block)  # fmt: skip
        mean = total / count
        statistics += [mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))]
    return statistics


def train_avvp(config: AvvpTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train, select on val, score test; write RUN's outputs; return metrics (as in metrics.json)."""
    with deterministic_kernels(resolve_device(config.device), config.threads):
        return _train_avvp(config, after_step)


def _train_avvp(config: AvvpTrainConfig, after_step: Callable[[int], None] | None) -> dict[str, Any]:
    from mertk.metrics.avvp import matrices_to_rows

    if config.tie_mode not in TIE_MODES:
        raise TrainingError(f"--tie-mode must be pull or leak, not {config.tie_mode!r}")
    if config.pseudo_target not in PSEUDO_TARGETS:
        raise TrainingError(f"--pseudo-target must be hard or soft, not {config.pseudo_target!r}")
    device = resolve_device(config.device)
    out = Path(config.out)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else out / "cache"

    packed = pack_llp(config.llp, config.features, cache_dir, progress=config.progress)
    train_rows = packed.rows_of("train")
    if len(train_rows) == 0:
        raise TrainingError(f"{config.llp}: no train video with usable features")
    val, test = dense_truth(config.llp, packed, "val"), dense_truth(config.llp, packed, "test")
    if len(val.rows) == 0 or len(test.rows) == 0:
        raise TrainingError(f"{config.llp}: model selection and testing need val and test videos with features (found {len(val.rows)} val, {len(test.rows)} test)")
    pseudo: PseudoLabels | None = read_pseudo_labels(config.labels, packed) if config.labels is not None else None
    if pseudo is not None and not pseudo.has_v[train_rows].any():
        raise TrainingError(f"--labels {config.labels}: no pseudo-label row names a train video of {config.llp}")

    seed_everything(config.seed)
    model_config = ParserConfig(
        audio_dim=packed.audio_v_t_d.shape[2], visual_dim=packed.visual_v_t_d.shape[2], d_model=config.d_model,
        heads=config.heads, layers=config.layers, dropout=config.dropout, unimodal_heads=config.unimodal,
    )  # fmt: skip
    model = HybridAttentionParser(model_config)
    model.set_input_statistics(*_feature_statistics(packed, train_rows))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    weak = torch.from_numpy(packed.weak_v_c.astype(np.float32))
    target = None
    if pseudo is not None:
        target = torch.from_numpy(pseudo.hard_v_m_t_c if config.pseudo_target == "hard" else pseudo.soft_v_m_t_c)
        has = torch.from_numpy(pseudo.has_v)
    train_index = torch.from_numpy(train_rows)

    def fetch(positions: torch.Tensor):
        rows = np.sort(train_index[positions].numpy())  # sorted: sequential reads from a memmap
        rows_t = torch.from_numpy(rows)
        batch = {
            "audio": torch.from_numpy(np.asarray(packed.audio_v_t_d[rows])),
            "visual": torch.from_numpy(np.asarray(packed.visual_v_t_d[rows])),
            "weak": weak.index_select(0, rows_t),
        }
        if target is not None:
            batch["migrated"] = target.index_select(0, rows_t)
            batch["has"] = has.index_select(0, rows_t)
        return {name: value.to(device, non_blocking=True) for name, value in batch.items()}

    def step(batch) -> float:
        output = model(batch["audio"], batch["visual"])
        loss = parser_loss(output, batch["weak"], batch.get("migrated"), batch.get("has"), config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def end_of_epoch(epoch: int) -> dict[str, float]:
        scores, _, _ = _score(model, packed, val, device, config.threshold)
        return {
            "val_segment_type": round(scores.segment["type"], 4),
            "val_segment_event": round(scores.segment["event"], 4),
            "val_select": round((scores.segment["type"] + scores.segment["event"]) / 2, 4),
        }

    fingerprint = {"parameters": config.parameters(), "data": packed.key, "labels": pseudo.key if pseudo else None}
    spec = LoopSpec(
        model=model, optimizer=optimizer, n_items=len(train_rows), batch_size=config.batch_size, epochs=config.epochs,
        seed=config.seed, fetch_batch=fetch, train_step=step, end_of_epoch=end_of_epoch, select_on="val_select",
        metric_label="val_select", state_path=out / STATE_DIR / "train.pt", state_kind=STATE_KIND,
        fingerprint=fingerprint, checkpoint_every=config.checkpoint_every, after_step=after_step,
    )  # fmt: skip
    with training_progress(config.progress) as progress:
        progress.set_description(f"train avvp ({'migrated' if pseudo else 'weak only'})")
        loop = run_loop(spec, progress)

    val_scores, _, _ = _score(model, packed, val, device, config.threshold)
    test_scores, test_audio, test_visual = _score(model, packed, test, device, config.threshold)
    save_model_weights(out / "checkpoints" / "parser.safetensors", model.state_dict(), model=MODEL_NAME,
                       config={**model_config.to_dict(), "features": config.features, "threshold": config.threshold})

    rows = matrices_to_rows(test.filenames, test_audio, test_visual)
    per_class = _per_class_f1(test_audio, test_visual, test)
    predictions_path = out / "predictions.parquet"
    write_shard(PREDICTION_SCHEMA.table_from_rows(rows), predictions_path, PREDICTION_SCHEMA)
    seconds = loop.data_seconds + loop.compute_seconds
    metrics = {
        "task": "avvp",
        "features": config.features,
        "labels": str(config.labels) if config.labels is not None else "none",
        "val": val_scores.to_dict(),
        "test": test_scores.to_dict(),
        "best_epoch": loop.best_epoch,
        "history": loop.history,
        "videos": {"train": int(len(train_rows)), "val": int(len(val.rows)), "test": int(len(test.rows)),
                   "train_with_pseudo_labels": int(pseudo.has_v[train_rows].sum()) if pseudo else 0,
                   "rejected": len(packed.rejections)},
        "eval_label_defects": {"val": val.defects, "test": test.defects},
        "parameters": config.parameters(),
        "device": str(device),
    }  # fmt: skip
    timing = {
        "samples_per_second": round(loop.samples_seen / seconds, 1) if seconds > 0 else None,
        "data_wait_share": round(loop.data_seconds / seconds, 4) if seconds > 0 else None,
        "note": "training steps of this process only (validation excluded)",
    }
    write_single_output_manifest(
        out, PREDICTION_SCHEMA, predictions_path, command="mertk train avvp",
        parameters={**config.parameters(), "llp": str(config.llp), "split": "test"},
        inputs_seen=len(test.rows), inputs_written=len(test.rows), rows_written=len(rows),
        summary={"test_segment": test_scores.segment, "test_event": test_scores.event, "best_epoch": loop.best_epoch},
        extra_versions=("torch",),
    )  # fmt: skip
    write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    write_bytes_atomic(out / THROUGHPUT_NAME, (json.dumps(timing, indent=2, sort_keys=True) + "\n").encode())
    write_avvp_report(out / REPORT_NAME, metrics, per_class)
    return {**metrics, "throughput": timing}


def _per_class_f1(audio_v_c_t: np.ndarray, visual_v_c_t: np.ndarray, truth: DenseTruth) -> dict[str, dict[str, Any]]:
    """Segment-level F1 per class and modality on test; a class neither true nor predicted is absent (F1 undefined)."""
    from mertk.corpora.llp_annotations import LLP_CLASSES
    from mertk.metrics.avvp import per_class_segment_scores

    scores = {"audio": per_class_segment_scores(audio_v_c_t, truth.audio_v_c_t), "visual": per_class_segment_scores(visual_v_c_t, truth.visual_v_c_t)}
    per_class: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(LLP_CLASSES):
        item: dict[str, Any] = {"support": int(scores["audio"].support[index] + scores["visual"].support[index])}
        for modality, score in scores.items():
            f1 = float(score.f1[index])
            undefined = bool(np.isnan(f1))
            item[modality] = 0.0 if undefined else f1
            item[f"support_{modality}"] = int(score.support[index])
            item[f"predicted_{modality}"] = 0 if undefined else 1  # F1 is undefined only when nothing is true or predicted
        per_class[name] = item
    return per_class
