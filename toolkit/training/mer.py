"""`mertk train mer`: the three-expert gated model under leave-one-subject-out.

One fold per subject: a fresh model (initialised from seed and fold index) is trained on every
other subject and predicts the held-out one. UF1/UAR are computed once over the pooled
predictions of all folds (mertk.metrics.mer), as the protocol asks; per-fold figures and the mean
gate weight per expert are reported beside them.

Loss: cross-entropy of the fused logits + `expert_loss_weight` x the mean cross-entropy of each
expert's own logits; both class-weighted by inverse training-fold frequency (CASME II is heavily
imbalanced and UF1/UAR weigh every class alike). Augmentation: horizontal flip of face and flow
(the flow's u component changes sign) with probability 0.5.

Output directory RUN:
  metrics.json          pooled + per-fold UF1/UAR, gate weights, ablation-ready parameters, throughput
  predictions.parquet   mer_prediction.v1 (one row per sample, held-out fold's prediction), _manifest.json
  confusion.png         pooled confusion matrix
  checkpoints/fold-<subject>.safetensors   final weights of each fold (mertk header)
  _state/               fold results and the training state of the running fold (resume)
  cache/                packed inputs and text embeddings (unless --cache-dir)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mertk.models.checkpoint import save_model_weights
from mertk.models.mer_experts import EXPERTS, MODEL_NAME, GatedExpertsModel, MerModelConfig
from mertk.shards.io import write_bytes_atomic, write_shard
from mertk.errors import ResumeMismatchError
from mertk.shards.layout import STATE_DIR
from mertk.shards.manifest import Rejection, write_single_output_manifest
from mertk.shards.schema import load_schema
from mertk.training.errors import TrainingError
from mertk.training.loop import LoopSpec, deterministic_kernels, evaluation_mode, resolve_device, result_parameters, run_loop, seed_everything
from mertk.training.mer_data import (
    PROTOCOL_CLASSES,
    PROTOCOL_COLUMN,
    PackedMer,
    fold_subjects,
    pack_unimer,
    resolve_semantic_encoder,
    semantic_embeddings,
)
from mertk.training.progress import TrainingProgress, training_progress

PREDICTION_SCHEMA = load_schema("mer_prediction", 1)
STATE_KIND = "mer"


@dataclass
class MerTrainConfig:
    unimer_dir: Path
    out: Path
    protocol: str = "5class"
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    dropout: float = 0.3
    expert_loss_weight: float = 0.5
    class_weighting: bool = True
    augment: bool = True
    semantic_encoder: str = "auto"
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    checkpoint_every: int = 200
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    progress: bool = True
    # cross-corpus protocol: train on these datasets, test on those (one fold instead of LOSO)
    train_on: list[str] = field(default_factory=list)
    test_on: list[str] = field(default_factory=list)

    def parameters(self) -> dict[str, Any]:
        """What determines the result (paths and presentation excluded)."""
        return result_parameters(self, ("unimer_dir", "out"))


class MerTrainingError(TrainingError):
    """The run cannot proceed (bad protocol, too few subjects, ...)."""


@dataclass
class _Inputs:
    """The packed inputs of the protocol's samples, as tensors on the training device."""

    tensors: dict[str, torch.Tensor]  # expert name -> (n, ...)
    labels_n: torch.Tensor
    subjects: list[str]
    index: np.ndarray  # row of each sample in the PackedMer


def _select_inputs(packed: PackedMer, config: MerTrainConfig, device: torch.device, semantics_nd: np.ndarray) -> tuple[_Inputs, list[Rejection]]:
    classes = PROTOCOL_CLASSES[config.protocol]
    column = PROTOCOL_COLUMN[config.protocol]
    keep, rejections = [], []
    cross = set(config.train_on) | set(config.test_on)
    for row, label in enumerate(packed.labels[column]):
        if cross and packed.datasets[row] not in cross:
            rejections.append(Rejection(input=packed.sample_ids[row], reason=f"dataset {packed.datasets[row]} is in neither --train-on nor --test-on"))
        elif label is None and config.protocol == "megc2019":
            rejections.append(Rejection(input=packed.sample_ids[row], reason="not in the MEGC2019 composite list"))
        elif label is None:
            rejections.append(
                Rejection(input=packed.sample_ids[row], reason=f"emotion {packed.emotions[row]!r} is not in the {config.protocol} protocol")
            )
        else:
            keep.append(row)
    index = np.asarray(keep, dtype=np.int64)
    tensors = {
        "structure": torch.from_numpy(packed.faces_n1hw[index].astype(np.float32) / 255.0),
        "texture": torch.from_numpy(packed.flow_n3hw[index]),
        "semantics": torch.from_numpy(semantics_nd[index]),
    }
    # packed once, moved to the device once: a batch is an index_select, no per-sample I/O
    tensors = {name: tensors[name].contiguous().to(device) for name in config.experts}
    labels = torch.tensor([classes.index(packed.labels[column][row]) for row in keep], dtype=torch.long, device=device)
    return _Inputs(tensors, labels, [packed.subjects[row] for row in keep], index), rejections


def _class_weights(labels_n: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels_n.cpu(), minlength=num_classes).float()
    present = (counts > 0).sum().clamp_min(1)
    weights = torch.where(counts > 0, counts.sum() / (present * counts.clamp_min(1)), torch.zeros_like(counts))
    return weights


def _augment(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Horizontal flip of half the batch (drawn on the CPU generator: the same on every device)."""
    size = next(iter(batch.values())).shape[0]
    flip = torch.rand(size) < 0.5
    if not flip.any():
        return batch
    out = dict(batch)
    device = next(iter(batch.values())).device
    mask = flip.to(device)
    if "structure" in out:
        out["structure"] = torch.where(mask[:, None, None, None], out["structure"].flip(3), out["structure"])
    if "texture" in out:
        flipped = out["texture"].flip(3) * torch.tensor([-1.0, 1.0, 1.0], device=device)[None, :, None, None]
        out["texture"] = torch.where(mask[:, None, None, None], flipped, out["texture"])
    return out


def _fold_fingerprint(config: MerTrainConfig, data_key: str, subject: str, encoder: str) -> dict[str, Any]:
    return {"parameters": config.parameters(), "data": data_key, "fold": subject, "encoder": encoder}


def train_mer(config: MerTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate under LOSO; write RUN's outputs; return the metrics dict (as in metrics.json)."""
    with deterministic_kernels(resolve_device(config.device), config.threads):
        return _train_mer(config, after_step)


def _train_mer(config: MerTrainConfig, after_step: Callable[[int], None] | None) -> dict[str, Any]:
    if config.protocol not in PROTOCOL_CLASSES:
        raise MerTrainingError(f"unknown protocol {config.protocol!r}; use {', '.join(PROTOCOL_CLASSES)}")
    if bool(config.train_on) != bool(config.test_on) or set(config.train_on) & set(config.test_on):
        raise MerTrainingError("the cross-corpus protocol needs --train-on and --test-on, naming different datasets")
    unknown = [e for e in config.experts if e not in EXPERTS]
    if unknown or not config.experts:
        raise MerTrainingError(f"--experts takes a comma-separated subset of {','.join(EXPERTS)}; got {','.join(config.experts) or 'nothing'}")
    config.experts = [e for e in EXPERTS if e in config.experts]  # canonical order
    device = resolve_device(config.device)
    out = Path(config.out)
    state_dir = out / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else out / "cache"

    packed = pack_unimer(config.unimer_dir, cache_dir)
    encoder = resolve_semantic_encoder(config.semantic_encoder) if "semantics" in config.experts else "unused"
    semantics = semantic_embeddings(packed, encoder, cache_dir) if "semantics" in config.experts else np.zeros((len(packed.sample_ids), 1), np.float32)
    inputs, protocol_rejections = _select_inputs(packed, config, device, semantics)
    classes = PROTOCOL_CLASSES[config.protocol]
    if config.train_on:  # one fold: every test-dataset sample is held out
        datasets = np.asarray([packed.datasets[row] for row in inputs.index])
        fold = f"{'+'.join(config.train_on)}-to-{'+'.join(config.test_on)}"
        for role, names in (("--train-on", config.train_on), ("--test-on", config.test_on)):
            if not np.isin(datasets, names).any():
                raise MerTrainingError(f"{config.unimer_dir}: no {config.protocol} samples of {', '.join(names)} ({role})")
        subjects, subject_array = [fold], np.where(np.isin(datasets, config.test_on), fold, "train")
    else:
        subjects = fold_subjects(inputs.subjects)
        if len(subjects) < 2:
            raise MerTrainingError(f"{config.unimer_dir}: leave-one-subject-out needs at least two subjects, found {len(subjects)}")
        subject_array = np.asarray(inputs.subjects)

    fold_results: list[dict[str, Any]] = []
    throughput = {"samples": 0, "data_seconds": 0.0, "compute_seconds": 0.0}
    with training_progress(config.progress) as progress:
        for fold_index, subject in enumerate(subjects):
            result_path = state_dir / f"fold-{subject}.json"
            fingerprint = _fold_fingerprint(config, packed.key, subject, encoder)
            if result_path.is_file():
                stored = json.loads(result_path.read_text(encoding="utf-8"))
                if stored.get("fingerprint") != fingerprint:
                    raise ResumeMismatchError(f"{out} holds folds of a run with other parameters; use another --out or delete it")
                fold_results.append(stored)
                continue
            progress.set_description(f"fold {fold_index + 1}/{len(subjects)} ({subject})")
            result, loop = _train_fold(config, inputs, subject_array, subject, fold_index, fingerprint, device, classes, encoder, progress, after_step, semantics.shape[1])
            throughput["samples"] += loop.samples_seen
            throughput["data_seconds"] += loop.data_seconds
            throughput["compute_seconds"] += loop.compute_seconds
            write_bytes_atomic(result_path, json.dumps(result, sort_keys=True).encode())
            (state_dir / f"fold-{subject}.pt").unlink(missing_ok=True)
            fold_results.append(result)
            progress.set_metric("UF1 of folds so far", _pooled_uf1(fold_results, inputs, classes))

    return _write_outputs(config, packed, inputs, classes, fold_results, protocol_rejections, encoder, device, throughput)


def _train_fold(config, inputs: _Inputs, subject_array, subject, fold_index, fingerprint, device, classes, encoder, progress: TrainingProgress, after_step, semantic_dim):
    train_rows = torch.from_numpy(np.nonzero(subject_array != subject)[0])
    test_rows = torch.from_numpy(np.nonzero(subject_array == subject)[0])
    seed = config.seed * 1009 + fold_index
    seed_everything(seed)
    model_config = MerModelConfig(len(classes), list(config.experts), semantic_dim, config.hidden, config.dropout)
    model = GatedExpertsModel(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weights = _class_weights(inputs.labels_n[train_rows.to(device)], len(classes)).to(device) if config.class_weighting else None

    def fetch(positions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rows = train_rows[positions].to(device)
        return {name: t.index_select(0, rows) for name, t in inputs.tensors.items()}, inputs.labels_n.index_select(0, rows)

    def step(batch) -> float:
        features, labels = batch
        if config.augment:
            features = _augment(features)
        output = model(features)
        loss = F.cross_entropy(output.logits_bc, labels, weight=weights)
        if config.expert_loss_weight > 0 and len(config.experts) > 1:
            expert_losses = [F.cross_entropy(logits, labels, weight=weights) for logits in output.expert_logits_ebc]
            loss = loss + config.expert_loss_weight * torch.stack(expert_losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    spec = LoopSpec(
        model=model,
        optimizer=optimizer,
        n_items=len(train_rows),
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=seed,
        fetch_batch=fetch,
        train_step=step,
        state_path=Path(config.out) / STATE_DIR / f"fold-{subject}.pt",
        state_kind=STATE_KIND,
        fingerprint=fingerprint,
        checkpoint_every=config.checkpoint_every,
        after_step=after_step,
    )
    loop = run_loop(spec, progress)

    with evaluation_mode(model):
        rows = test_rows.to(device)
        output = model({name: t.index_select(0, rows) for name, t in inputs.tensors.items()})
        probabilities = torch.softmax(output.logits_bc, dim=1).cpu().numpy()
        gates = output.gate_be.cpu().numpy()
    save_model_weights(
        Path(config.out) / "checkpoints" / f"fold-{subject}.safetensors",
        model.state_dict(),
        model=MODEL_NAME,
        config={**model_config.to_dict(), "classes": list(classes), "protocol": config.protocol, "held_out": subject, "semantic_encoder": encoder},
    )
    result = {
        "fingerprint": fingerprint,
        "subject": subject,
        "rows": test_rows.tolist(),
        "probabilities": probabilities.round(6).tolist(),
        "gates": gates.round(6).tolist(),
        "final_train_loss": loop.history[-1]["train_loss"] if loop.history else None,
    }
    return result, loop


def _write_outputs(config, packed: PackedMer, inputs: _Inputs, classes, fold_results, protocol_rejections, encoder, device, throughput) -> dict[str, Any]:
    from mertk.metrics.mer import confusion_matrix, mer_scores

    out = Path(config.out)
    n = len(inputs.subjects)
    probabilities = np.zeros((n, len(classes)), dtype=np.float32)
    gates = np.zeros((n, len(config.experts)), dtype=np.float32)
    held_out = [""] * n
    for result in fold_results:
        rows = np.asarray(result["rows"], dtype=np.int64)
        probabilities[rows] = np.asarray(result["probabilities"], dtype=np.float32)
        gates[rows] = np.asarray(result["gates"], dtype=np.float32)
        for row in rows:
            held_out[row] = result["subject"]
    predicted = probabilities.argmax(axis=1)
    labels = inputs.labels_n.cpu().numpy()
    label_names = [classes[i] for i in labels]
    predicted_names = [classes[i] for i in predicted]

    evaluated = [i for i in range(n) if held_out[i]]  # all under LOSO; the test datasets' rows cross-corpus
    if len(evaluated) < n:
        label_names, predicted_names = [label_names[i] for i in evaluated], [predicted_names[i] for i in evaluated]
        labels, probabilities, gates, held_out = labels[evaluated], probabilities[evaluated], gates[evaluated], [held_out[i] for i in evaluated]
        inputs = _Inputs(inputs.tensors, inputs.labels_n, [inputs.subjects[i] for i in evaluated], inputs.index[evaluated])
        fold_results = [{**r, "rows": list(range(len(evaluated)))} for r in fold_results]
        n = len(evaluated)
    pooled = mer_scores(label_names, predicted_names, classes)
    per_dataset = {}
    for dataset in sorted({packed.datasets[row] for row in inputs.index}):
        rows = [i for i in range(n) if packed.datasets[inputs.index[i]] == dataset]
        scores = mer_scores([label_names[i] for i in rows], [predicted_names[i] for i in rows], classes)
        per_dataset[dataset] = {"uf1": scores["uf1"], "uar": scores["uar"], "samples": len(rows)}
    folds = []
    for result in fold_results:
        rows = np.asarray(result["rows"], dtype=np.int64)
        # per fold, classes absent from the held-out subject (and never predicted) are skipped
        scores = mer_scores([label_names[r] for r in rows], [predicted_names[r] for r in rows], classes, skip_absent=True)
        folds.append(
            {
                "subject": result["subject"],
                "samples": int(len(rows)),
                "uf1": scores["uf1"],
                "uar": scores["uar"],
                "gate_weights": _gate_dict(config.experts, np.asarray(result["gates"])),
            }
        )

    prediction_rows = [
        {
            "sample_id": packed.sample_ids[inputs.index[i]],
            "dataset": packed.datasets[inputs.index[i]],
            "subject": held_out[i],
            "label": label_names[i],
            "prediction": predicted_names[i],
            "probabilities": [float(p) for p in probabilities[i]],
        }
        for i in range(n)
    ]
    predictions_path = out / "predictions.parquet"
    write_shard(PREDICTION_SCHEMA.table_from_rows(prediction_rows), predictions_path, PREDICTION_SCHEMA)
    rejections = list(packed.rejections) + list(protocol_rejections)
    gate_means = _gate_dict(config.experts, gates)
    confusion = confusion_matrix(label_names, predicted_names, classes)
    samples, seconds = throughput["samples"], throughput["data_seconds"] + throughput["compute_seconds"]
    metrics = {
        "task": "mer",
        "protocol": config.protocol,
        "classes": list(classes),
        "experts": list(config.experts),
        "semantic_encoder": encoder,
        "pooled": {"uf1": pooled["uf1"], "uar": pooled["uar"], "samples": n, "folds": len(fold_results), "per_class": pooled["per_class"]},
        "per_dataset": per_dataset,
        "composite": _composite_report(packed) if config.protocol == "megc2019" else None,
        "cross_corpus": {"train_on": list(config.train_on), "test_on": list(config.test_on)} if config.train_on else None,
        "chance": {"uf1_uniform_guess": _chance_uf1(labels, len(classes)), "uar": 1.0 / len(classes)},
        "gate_weights": gate_means,
        "folds": folds,
        "confusion": {"rows_true_columns_predicted": confusion.tolist()},
        "inputs": {"seen": packed.inputs_seen, "used": n, "rejected": len(rejections)},
        "parameters": config.parameters(),
        "device": str(device),
        "throughput": {
            "samples_per_second": round(samples / seconds, 1) if seconds > 0 else None,
            "data_wait_share": round(throughput["data_seconds"] / seconds, 4) if seconds > 0 else None,
            "note": "this process only (folds resumed from disk are not counted)",
        },
    }
    write_single_output_manifest(
        out,
        PREDICTION_SCHEMA,
        predictions_path,
        command="mertk train mer",
        parameters={**config.parameters(), "unimer_dir": str(config.unimer_dir)},
        inputs_seen=packed.inputs_seen,
        inputs_written=n,
        rows_written=n,
        rejections=rejections,
        summary={"uf1": pooled["uf1"], "uar": pooled["uar"], "gate_weights": gate_means},
        extra_versions=("torch",),
    )
    write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    _confusion_png(out / "confusion.png", confusion, classes, f"{config.protocol}, experts {'+'.join(config.experts)}: UF1 {pooled['uf1']:.3f}, UAR {pooled['uar']:.3f}")
    return metrics


def _composite_report(packed: PackedMer) -> dict[str, Any]:
    """How much of the MEGC2019 list the Uni-MER directory holds, and what it lacks."""
    from mertk.corpora.megc2019 import composite_key, load_composite_list

    held = {composite_key(d, s, c) for d, s, c in zip(packed.datasets, packed.subjects, packed.clips)}
    entries = load_composite_list()
    missing = [e for e in entries if e.key not in held]
    by_dataset: dict[str, int] = {}
    for entry in missing:
        by_dataset[entry.dataset] = by_dataset.get(entry.dataset, 0) + 1
    return {
        "listed": len(entries),
        "found": len(entries) - len(missing),
        "missing": len(missing),
        "missing_by_dataset": dict(sorted(by_dataset.items())),
        "missing_first": [f"{e.dataset} {e.subject}/{e.clip}" for e in missing[:10]],
    }


def _pooled_uf1(fold_results: list[dict[str, Any]], inputs: _Inputs, classes) -> float:
    from mertk.metrics.mer import mer_scores

    labels, predicted = [], []
    for result in fold_results:
        labels += [classes[int(inputs.labels_n[row])] for row in result["rows"]]
        predicted += [classes[int(np.argmax(p))] for p in result["probabilities"]]
    return mer_scores(labels, predicted, classes)["uf1"]


def _gate_dict(experts: list[str], gates_ne: np.ndarray) -> dict[str, float]:
    """Mean gate weight per expert over the given samples."""
    return {name: round(float(value), 4) for name, value in zip(experts, gates_ne.mean(axis=0))}


def _chance_uf1(labels: np.ndarray, num_classes: int) -> float:
    """Expected UF1 of guessing uniformly at random: per class, precision = prior, recall = 1/C."""
    priors = np.bincount(labels, minlength=num_classes) / max(1, len(labels))
    recall = 1.0 / num_classes
    f1 = [2 * p * recall / (p + recall) if p + recall > 0 else 0.0 for p in priors]
    return round(float(np.mean(f1)), 4)


def _confusion_png(path: Path, matrix: np.ndarray, classes, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mertk.report.html import figure_png

    figure, axes = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=9)
    peak = max(1, matrix.max())
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if matrix[i, j] > peak / 2 else "black")
    write_bytes_atomic(path, figure_png(figure))


