"""What `mertk train mer` writes once its folds are trained: pooled scores, predictions, metrics, figures.

LOSO (or the cross-corpus fold): metrics.json (pooled, per-dataset and per-fold UF1/UAR, gate
weights, test-time inputs; megc2019: the composite list's samples the directory lacks),
predictions.parquet + _manifest.json, confusion.png and _report.html. --final: metrics.json and
_report.html. Scores cover the held-out samples: every sample under LOSO, the test datasets'
cross-corpus.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mertk.shards.io import write_bytes_atomic, write_shard
from mertk.shards.layout import REPORT_NAME
from mertk.shards.manifest import write_single_output_manifest
from mertk.shards.schema import load_schema
from mertk.training.run_report import confusion_figure, write_mer_report

if TYPE_CHECKING:
    from mertk.training.mer_data import PackedMer

# `run` below is the trainer's mertk.training.mer._Run (config, protocol, packed data, inputs, ...);
# not imported, as mer imports this module.
_Run = Any

PREDICTION_SCHEMA = load_schema("mer_prediction", 1)


def write_loso_outputs(run: _Run, fold_results, protocol_rejections) -> dict[str, Any]:
    from mertk.metrics.mer import confusion_matrix, mer_scores

    config, packed, inputs, classes = run.config, run.packed, run.inputs, run.protocol.classes
    out = run.out
    probabilities = np.zeros((len(inputs.subjects), len(classes)), dtype=np.float32)
    gates = np.zeros((len(inputs.subjects), len(config.experts)), dtype=np.float32)
    held_out = [""] * len(inputs.subjects)
    for result in fold_results:
        rows = np.asarray(result["rows"], dtype=np.int64)
        probabilities[rows] = np.asarray(result["probabilities"], dtype=np.float32)
        gates[rows] = np.asarray(result["gates"], dtype=np.float32)
        for row in rows:
            held_out[row] = result["subject"]
    labels = inputs.labels_n.cpu().numpy()
    label_names = [classes[i] for i in labels]
    predicted_names = [classes[i] for i in probabilities.argmax(axis=1)]
    evaluated = sorted(int(row) for result in fold_results for row in result["rows"])  # the held-out samples
    n = len(evaluated)

    def scored(rows) -> dict[str, Any]:
        return mer_scores([label_names[r] for r in rows], [predicted_names[r] for r in rows], classes)

    pooled = scored(evaluated)
    datasets = [packed.datasets[row] for row in inputs.index]
    per_dataset = {}
    for name in sorted({datasets[r] for r in evaluated}):
        rows = [r for r in evaluated if datasets[r] == name]
        per_dataset[name] = {key: value for key, value in scored(rows).items() if key in ("uf1", "uar")} | {"samples": len(rows)}
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
                "gate_weights": gate_dict(config.experts, np.asarray(result["gates"])),
                "history": result["history"],
            }
        )

    prediction_rows = [
        {
            "sample_id": packed.sample_ids[inputs.index[i]],
            "dataset": datasets[i],
            "subject": held_out[i],
            "label": label_names[i],
            "prediction": predicted_names[i],
            "probabilities": [float(p) for p in probabilities[i]],
        }
        for i in evaluated
    ]
    predictions_path = out / "predictions.parquet"
    write_shard(PREDICTION_SCHEMA.table_from_rows(prediction_rows), predictions_path, PREDICTION_SCHEMA)
    rejections = list(packed.rejections) + list(protocol_rejections)
    gate_means = gate_dict(config.experts, gates[evaluated])
    label_names, predicted_names = [label_names[r] for r in evaluated], [predicted_names[r] for r in evaluated]
    confusion = confusion_matrix(label_names, predicted_names, classes)
    test_inputs = run.semantics.describe(config)
    metrics = {
        "task": "mer",
        "protocol": config.protocol,
        "classes": list(classes),
        "experts": list(config.experts),
        "semantic_encoder": run.semantics.encoder,
        "test_inputs": test_inputs,
        "pooled": {"uf1": pooled["uf1"], "uar": pooled["uar"], "samples": n, "folds": len(fold_results), "per_class": pooled["per_class"]},
        "per_dataset": per_dataset,
        "composite": composite_report(packed) if run.protocol.selected_by is not None else None,
        "cross_corpus": {"train_on": list(config.train_on), "test_on": list(config.test_on)} if config.train_on else None,
        "chance": {"uf1_uniform_guess": _chance_uf1(labels[evaluated], len(classes)), "uar": 1.0 / len(classes)},
        "gate_weights": gate_means,
        "folds": folds,
        "confusion": {"rows_true_columns_predicted": confusion.tolist()},
        "inputs": {"seen": packed.inputs_seen, "used": n, "rejected": len(rejections)},
        "parameters": config.parameters(),
        "device": str(run.device),
    }
    oracle_note = " [ORACLE: coded AUs of held-out samples read]" if test_inputs["oracle"] else ""
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
        summary={"uf1": pooled["uf1"], "uar": pooled["uar"], "gate_weights": gate_means, "test_inputs": test_inputs["setting"]},
        extra_versions=("torch",),
    )
    write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    title = f"{config.protocol}, experts {'+'.join(config.experts)}: UF1 {pooled['uf1']:.3f}, UAR {pooled['uar']:.3f}{oracle_note}"
    _confusion_png(out / "confusion.png", confusion, classes, title)
    held_out = [held_out[r] for r in evaluated]
    write_mer_report(out / REPORT_NAME, metrics, held_out_subjects=held_out, label_names=label_names, predicted_names=predicted_names, gates_ne=gates[evaluated])
    return metrics


def write_final_outputs(run: _Run, result: dict[str, Any]) -> dict[str, Any]:
    config = run.config
    metrics = {
        "task": "mer",
        "final": True,
        "protocol": config.protocol,
        "classes": list(run.protocol.classes),
        "experts": list(config.experts),
        "semantic_encoder": run.semantics.encoder,
        "test_inputs": run.semantics.describe(config),
        "checkpoint": result["checkpoint"],
        "training": {
            "subjects": sorted(set(run.inputs.subjects)),
            "samples": len(run.inputs.subjects),
            "gate_weights_on_training_samples": gate_dict(config.experts, np.asarray(result["gates"])),
            "history": result["history"],
        },
        "inputs": {"seen": run.packed.inputs_seen, "used": len(run.inputs.subjects)},
        "parameters": config.parameters(),
        "device": str(run.device),
    }
    write_bytes_atomic(run.out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    write_mer_report(run.out / REPORT_NAME, metrics)
    return metrics


def composite_report(packed: PackedMer) -> dict[str, Any]:
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


def gate_dict(experts: list[str], gates_ne: np.ndarray) -> dict[str, float]:
    """Mean gate weight per expert over the given samples."""
    return {name: round(float(value), 4) for name, value in zip(experts, gates_ne.mean(axis=0))}


def _chance_uf1(labels: np.ndarray, num_classes: int) -> float:
    """Expected UF1 of guessing uniformly at random: per class, precision = prior, recall = 1/C."""
    priors = np.bincount(labels, minlength=num_classes) / max(1, len(labels))
    recall = 1.0 / num_classes
    f1 = [2 * p * recall / (p + recall) if p + recall > 0 else 0.0 for p in priors]
    return round(float(np.mean(f1)), 4)


def _confusion_png(path: Path, matrix: np.ndarray, classes, title: str) -> None:
    write_bytes_atomic(path, confusion_figure(matrix, classes, title))
