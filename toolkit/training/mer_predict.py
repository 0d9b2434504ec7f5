"""`mertk predict mer`: apply a model trained by `mertk train mer` to any Uni-MER directory.

Which weights: `--fold SUBJECT` (the fold model that held SUBJECT out: on the training data it
reproduces the run's own predictions for that subject), `--all-folds` (the mean of every fold
model's class probabilities) or, by default, the `--final` model of the run.

What it reads of a sample: the inputs the checkpoint records as needed (`inputs`), nothing else.
For a model trained with `--test-inputs video` those are the video's alone (face crop, flow,
region statistics); labels, AU codes, captions and instructions of the samples are never read
into the model. A model trained with the oracle setting needs the coded AUs (au_evidence) and
the sentence encoder; without them predicting is a clear error.

Output DIR: predictions.parquet (mer_prediction.v1: label = the sample's class under the model's
protocol, or "" when it has none; subject = the sample's subject) and _manifest.json, whose summary
records the checkpoints, the test-time inputs and, where samples carry labels, UF1/UAR.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mertk.models.mer_experts import load_mer_model
from mertk.shards.io import write_shard
from mertk.shards.manifest import write_single_output_manifest
from mertk.shards.schema import load_schema
from mertk.training.errors import TrainingError
from mertk.training.loop import deterministic_kernels, evaluation_mode, resolve_device
from mertk.training.options import ORACLE_INPUTS
from mertk.training.mer_data import PackedMer, model_input_arrays, pack_unimer, resolve_semantic_encoder, sentence_embeddings
from mertk.training.mer_protocols import protocol_by_name

PREDICTION_SCHEMA = load_schema("mer_prediction", 1)
PREDICTIONS_NAME = "predictions.parquet"
CHECKPOINT_DIR = "checkpoints"


class MerPredictionError(TrainingError):
    """The model or the data cannot be used for prediction (the message says which and why)."""


@dataclass
class PredictionSummary:
    out: Path
    samples: int
    checkpoints: list[str]
    test_inputs: str
    oracle: bool
    scores: dict[str, Any] | None


def model_checkpoints(run: Path, fold: str | None = None, all_folds: bool = False) -> list[Path]:
    """The checkpoint files of RUN that `--fold` / `--all-folds` / the default (final model) select."""
    folder = Path(run) / CHECKPOINT_DIR
    if not folder.is_dir():
        raise MerPredictionError(f"--model {run}: no {CHECKPOINT_DIR}/ folder; expected the run directory of `mertk train mer`")
    folds = sorted(folder.glob("fold-*.safetensors"))
    names = ", ".join(path.stem.removeprefix("fold-") for path in folds) or "none"
    if fold is not None and all_folds:
        raise MerPredictionError("--fold and --all-folds exclude each other")
    if fold is not None:
        path = folder / f"fold-{fold}.safetensors"
        if not path.is_file():
            raise MerPredictionError(f"{path}: no fold model for subject {fold!r} (folds of this run: {names})")
        return [path]
    if all_folds:
        if not folds:
            raise MerPredictionError(f"{folder}: no fold models (train without --final for them)")
        return folds
    final = folder / "final.safetensors"
    if not final.is_file():
        raise MerPredictionError(f"{final}: this run has no final model (`mertk train mer --final`); pass --fold SUBJECT or --all-folds (folds: {names})")
    return [final]


def _check_same_task(records: list[dict[str, Any]], paths: list[Path]) -> None:
    keys = ("classes", "protocol", "experts", "test_inputs", "semantic_input", "semantic_dim")
    for record, path in zip(records[1:], paths[1:]):
        for key in keys:
            if record.get(key) != records[0].get(key):
                raise MerPredictionError(f"{path}: {key} {record.get(key)!r} differs from {paths[0].name}'s {records[0].get(key)!r}")


def _oracle_embeddings(packed: PackedMer, record: dict[str, Any]) -> np.ndarray:
    """The oracle model's semantics input: needs coded AUs in the data and the sentence encoder."""
    if record.get("semantic_encoder") != "minilm":
        raise MerPredictionError(f"the model reads sentence embeddings of encoder {record.get('semantic_encoder')!r}, which mertk cannot compute")
    try:
        resolve_semantic_encoder("minilm")
    except TrainingError as error:
        raise MerPredictionError(f"the model was trained with --test-inputs oracle-au and needs the sentence encoder: {error}") from None
    if not any("AU" in text for text in packed.annotations.texts):
        raise MerPredictionError("the model was trained with --test-inputs oracle-au (an oracle) and reads coded AUs (au_evidence), which no sample of this directory has")
    return sentence_embeddings(packed.annotations.texts, None)


def predict_probabilities(models: list[torch.nn.Module], inputs: dict[str, np.ndarray], subjects: list[str], device: torch.device) -> np.ndarray:
    """Mean class probabilities of `models`, computed one subject at a time (the batch a LOSO fold
    predicted, so that `--fold` reproduces its figures), rounded like the trainer's."""
    n = len(subjects)
    total = None
    subject_array = np.asarray(subjects)
    for model in models:
        model = model.to(device)
        probabilities = np.zeros((n, model.config.num_classes), dtype=np.float32)
        with evaluation_mode(model):
            for subject in sorted(set(subjects)):
                rows = np.nonzero(subject_array == subject)[0]
                batch = {name: torch.from_numpy(array[rows]).to(device) for name, array in inputs.items()}
                probabilities[rows] = torch.softmax(model(batch).logits_bc, dim=1).cpu().numpy()
        total = probabilities if total is None else total + probabilities
    return (total / np.float32(len(models))).round(6)  # float32 throughout, as the trainer rounds


def predict_mer(model_run: Path | str, unimer_dir: Path | str, out: Path | str, *, fold: str | None = None, all_folds: bool = False,
                device: str = "auto", threads: int = 0) -> PredictionSummary:  # fmt: skip
    """Predict every usable sample of `unimer_dir` with the selected model(s) of `model_run`; write OUT."""
    model_run, out = Path(model_run), Path(out)
    paths = model_checkpoints(model_run, fold, all_folds)
    loaded = [load_mer_model(path) for path in paths]
    models, records = [m for m, _ in loaded], [r for _, r in loaded]
    _check_same_task(records, paths)
    record = records[0]
    protocol = protocol_by_name(record["protocol"])
    classes = list(record["classes"])
    packed = pack_unimer(unimer_dir)
    rows = np.arange(len(packed.sample_ids))
    oracle = record.get("test_inputs") == ORACLE_INPUTS
    oracle_nd = _oracle_embeddings(packed, record) if oracle and "semantics" in record["experts"] else None
    inputs = model_input_arrays(packed.video, rows, list(record["experts"]), record["semantic_input"], oracle_nd)
    if "semantics" in inputs and inputs["semantics"].shape[1] != record["semantic_dim"]:
        raise MerPredictionError(f"{paths[0]}: the model reads {record['semantic_dim']} semantic values per sample, this data gives {inputs['semantics'].shape[1]}")

    torch_device = resolve_device(device)
    with deterministic_kernels(torch_device, threads):
        probabilities = predict_probabilities(models, inputs, packed.subjects, torch_device)
    predicted = probabilities.argmax(axis=1)
    labels = [label if label in classes else "" for label in packed.annotations.labels[protocol.label_column]]
    prediction_rows = [
        {
            "sample_id": packed.sample_ids[i],
            "dataset": packed.datasets[i],
            "subject": packed.subjects[i],
            "label": labels[i],
            "prediction": classes[predicted[i]],
            "probabilities": [float(p) for p in probabilities[i]],
        }
        for i in rows
    ]
    scores = _scores(labels, [classes[p] for p in predicted], classes)
    predictions_path = out / PREDICTIONS_NAME
    write_shard(PREDICTION_SCHEMA.table_from_rows(prediction_rows), predictions_path, PREDICTION_SCHEMA)
    checkpoints = [path.relative_to(model_run).as_posix() for path in paths]
    write_single_output_manifest(
        out, PREDICTION_SCHEMA, predictions_path, command="mertk predict mer",
        parameters={"model": str(model_run), "checkpoints": checkpoints, "unimer_dir": str(unimer_dir), "fold": fold, "all_folds": all_folds},
        inputs_seen=packed.inputs_seen, inputs_written=len(rows), rows_written=len(rows), rejections=packed.rejections,
        summary={"test_inputs": record.get("test_inputs"), "oracle": oracle, "model_inputs": record.get("inputs"),
                 "protocol": protocol.name, "trained_on": {k: record.get(k) for k in ("datasets", "data_key", "seed", "held_out")},
                 "scores_on_labelled_samples": scores},
        extra_versions=("torch",),
    )  # fmt: skip
    return PredictionSummary(out, len(rows), checkpoints, record.get("test_inputs"), oracle, scores)


def _scores(labels: list[str], predicted: list[str], classes: list[str]) -> dict[str, Any] | None:
    from mertk.metrics.mer import mer_scores

    chosen = [i for i, label in enumerate(labels) if label]
    if not chosen:
        return None
    scores = mer_scores([labels[i] for i in chosen], [predicted[i] for i in chosen], classes)
    return {"uf1": scores["uf1"], "uar": scores["uar"], "samples": len(chosen)}
