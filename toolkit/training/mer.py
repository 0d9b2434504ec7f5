"""`mertk train mer`: the three-expert gated model under leave-one-subject-out.

One fold per subject: a fresh model (initialised from seed and fold index) is trained on every
other subject and predicts the held-out one. UF1/UAR are computed once over the pooled
predictions of all folds (mertk.metrics.mer), as the protocol asks; per-fold figures and the mean
gate weight per expert are reported beside them, and per dataset where the protocol pools several
corpora. `final=True` (`--final`) trains one model on every subject instead, for `mertk predict
mer` on new clips. Cross-corpus (`train_on` + `test_on`, e.g. samm,smic -> casme2): one fold,
named `<train>-to-<test>`, holds out every sample of the test datasets.

Protocols (class set, where a sample's class comes from) are mertk.training.mer_protocols';
a sample without a class under the chosen protocol is a recorded rejection.

Test-time inputs (`test_inputs`, recorded in metrics.json and in every checkpoint):

- `video` (default): a held-out sample contributes its video alone: the apex face crop
  (structure), the onset->apex flow (texture) and the region motion statistics measured on that
  flow (motion semantics). Its labels, AU codes and label-constrained caption are never read
  for it: they are training targets of the other folds only (mer_data.Annotations).
- `oracle-au` (ORACLE, for measuring only): the semantics expert reads the sentence embedding of
  the sample's caption + AU clauses, for held-out samples too, as the model did before. AU codes
  are made by human coders next to the emotion label; no benchmark gives them at test time.

Loss of a batch (y = class, e = the motion-semantics expert's point in the sentence space,
t = MiniLM embedding of the sample's Uni-MER caption + AU clauses, both unit-normalised):

    L = CE_w(fused logits, y) + expert_loss_weight * mean over experts CE_w(expert logits, y)
      + align_weight * [ mean_i (1 - cos(e_i, t_i))                                  (cosine)
                         + mean_i -log( sum_{j: t_j = t_i} exp(cos(e_i, t_j) / tau)
                                        / sum_j exp(cos(e_i, t_j) / tau) ) ]        (batch contrastive)

CE_w is class-weighted by inverse training-fold frequency (CASME II is heavily imbalanced and
UF1/UAR weigh every class alike). The alignment term (our reading of DEFT-LLM's motion semantic
alignment) needs the sentence encoder and the `video` setting; the contrastive part counts every
sample with the same text as a positive (many captions are identical). tau = ALIGN_TEMPERATURE.
Augmentation: horizontal flip of face and flow (the flow's u component changes sign) with
probability 0.5; the region statistics are not flipped (their alignment target names a side).

Output directory RUN:
  metrics.json          pooled, per-dataset and per-fold UF1/UAR, gate weights, test-time inputs,
                        parameters; megc2019: which listed samples the directory lacks
  predictions.parquet   mer_prediction.v1 (one row per sample, held-out fold's prediction), _manifest.json
  confusion.png         pooled confusion matrix
  _report.html          learning curves, confusion, per-class, per-subject and gate figures
  checkpoints/fold-<subject>.safetensors   final weights of each fold (mertk header: what it was
                        trained on and the inputs it needs); checkpoints/final.safetensors with --final
  _state/               fold results (with the SHA-256 of their checkpoint: a re-run retrains a fold
                        whose checkpoint is damaged) and the training state of the running fold
  _throughput.json      samples per second of this process (the one file that differs between runs)
  cache/                packed inputs and sentence embeddings (unless --cache-dir)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mertk.console import console
from mertk.errors import ResumeMismatchError
from mertk.models.checkpoint import save_model_weights
from mertk.models.mer_experts import EXPERTS, MODEL_NAME, GatedExpertsModel, MerModelConfig
from mertk.shards.io import file_sha256, write_bytes_atomic
from mertk.shards.layout import STATE_DIR
from mertk.shards.manifest import Rejection
from mertk.training.errors import TrainingError
from mertk.training.loop import THROUGHPUT_NAME, LoopSpec, deterministic_kernels, evaluation_mode, resolve_device, result_parameters, run_loop, seed_everything
from mertk.training.mer_data import (
    ORACLE_COLUMNS,
    ORACLE_INPUTS,
    TEST_INPUTS,
    VIDEO_COLUMNS,
    PackedMer,
    fold_subjects,
    model_input_arrays,
    pack_unimer,
    resolve_semantic_encoder,
    sentence_embeddings,
)
from mertk.training.mer_outputs import write_final_outputs, write_loso_outputs
from mertk.training.mer_protocols import PROTOCOL_NAMES, MerProtocol, cross_corpus_fold, protocol_by_name, sample_folds
from mertk.training.progress import TrainingProgress, training_progress

STATE_KIND = "mer"
ALIGN_TEMPERATURE = 0.1
FINAL_NAME = "final"  # checkpoints/final.safetensors, _state/final.json


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
    align_weight: float = 1.0  # 0: the motion-semantics expert learns from the class labels alone
    test_inputs: str = "video"  # or "oracle-au" (an oracle: coded AUs of held-out samples are read)
    final: bool = False  # one model on every subject (no held-out fold)
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
    """The model inputs of the protocol's samples, as tensors on the training device.

    `tensors` hold what the model reads (for `video`, made from VideoInputs alone); `targets_nd`
    (sentence embeddings of caption + AU clauses) is read for training rows only, by the loss."""

    tensors: dict[str, torch.Tensor]  # expert name -> (n, ...)
    targets_nd: torch.Tensor | None
    labels_n: torch.Tensor
    subjects: list[str]
    folds: list[str]  # the fold that holds each sample out (mer_protocols.sample_folds)
    index: np.ndarray  # row of each sample in the PackedMer


@dataclass
class SemanticSetup:
    """How the semantics expert is fed and taught, resolved once per run (recorded everywhere)."""

    encoder: str  # minilm | region-stats | unused
    semantic_input: str  # motion | sentence-embedding (oracle)
    aligned: bool

    def describe(self, config: MerTrainConfig) -> dict[str, Any]:
        oracle = config.test_inputs == ORACLE_INPUTS
        held_out = [f"{column} ({expert})" for expert in config.experts for column in VIDEO_COLUMNS[expert]]
        if oracle and "semantics" in config.experts:
            held_out = [item for item in held_out if not item.endswith("(semantics)")]
            held_out += [f"{column} (semantics, ORACLE: coded AUs)" for column in ORACLE_COLUMNS]
        return {
            "setting": config.test_inputs,
            "oracle": oracle,
            "held_out_sample_inputs": held_out,
            "training_only": ["emotion class"] + (["caption + AU clauses (alignment target)"] if self.aligned else []),
            "alignment": f"cosine + batch contrastive, weight {config.align_weight}, tau {ALIGN_TEMPERATURE}" if self.aligned else "off",
        }


def resolve_semantics(config: MerTrainConfig) -> SemanticSetup:
    if "semantics" not in config.experts:
        return SemanticSetup("unused", "motion", False)
    encoder = resolve_semantic_encoder(config.semantic_encoder)
    if config.test_inputs == ORACLE_INPUTS:
        if encoder != "minilm":
            raise MerTrainingError("--test-inputs oracle-au reads the caption + AU clauses through the sentence encoder; it needs --semantic-encoder minilm")
        return SemanticSetup(encoder, "sentence-embedding", False)
    return SemanticSetup(encoder, "motion", encoder == "minilm" and config.align_weight > 0)


def _select_inputs(packed: PackedMer, config: MerTrainConfig, protocol: MerProtocol, semantics: SemanticSetup, device: torch.device, cache_dir: Path) -> tuple[_Inputs, list[Rejection]]:
    keep, rejections = [], []
    cross = set(config.train_on) | set(config.test_on)
    for row, label in enumerate(packed.annotations.labels[protocol.label_column]):
        if cross and packed.datasets[row] not in cross:
            rejections.append(Rejection(input=packed.sample_ids[row], reason=f"dataset {packed.datasets[row]} is in neither --train-on nor --test-on"))
        elif label is None or not protocol.accepts_dataset(packed.datasets[row]):
            rejections.append(Rejection(input=packed.sample_ids[row], reason=protocol.rejection_reason(packed.annotations.emotions[row])))
        else:
            keep.append(row)
    index = np.asarray(keep, dtype=np.int64)
    needs_text = semantics.aligned or semantics.semantic_input == "sentence-embedding"
    text_nd = sentence_embeddings(packed.annotations.texts, cache_dir) if needs_text else None
    oracle = text_nd if semantics.semantic_input == "sentence-embedding" else None
    arrays = model_input_arrays(packed.video, index, config.experts, semantics.semantic_input, oracle)
    # packed once, moved to the device once: a batch is an index_select, no per-sample I/O
    tensors = {name: torch.from_numpy(array).to(device) for name, array in arrays.items()}
    targets = torch.from_numpy(np.ascontiguousarray(text_nd[index])).to(device) if semantics.aligned else None
    labels = torch.tensor([protocol.classes.index(packed.annotations.labels[protocol.label_column][row]) for row in keep], dtype=torch.long, device=device)
    subjects = [packed.subjects[row] for row in keep]
    folds = sample_folds(subjects, [packed.datasets[row] for row in keep], config.train_on, config.test_on, f"{config.unimer_dir}: {protocol.name}")
    return _Inputs(tensors, targets, labels, subjects, folds, index), rejections


def _class_weights(labels_n: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels_n.cpu(), minlength=num_classes).float()
    present = (counts > 0).sum().clamp_min(1)
    weights = torch.where(counts > 0, counts.sum() / (present * counts.clamp_min(1)), torch.zeros_like(counts))
    return weights


def alignment_loss(embedding_bd: torch.Tensor, target_bd: torch.Tensor, temperature: float = ALIGN_TEMPERATURE) -> torch.Tensor:
    """Cosine + batch-contrastive alignment of the expert's embeddings to the sentence embeddings
    (the module docstring's formula); samples with the same target text are each other's positives."""
    e = F.normalize(embedding_bd, dim=1)
    t = F.normalize(target_bd, dim=1)
    cosine = (1.0 - (e * t).sum(dim=1)).mean()
    logits = e @ t.T / temperature
    positive = (t @ t.T) > 1.0 - 1e-5
    contrastive = -(torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1) - torch.logsumexp(logits, dim=1)).mean()
    return cosine + contrastive


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


def _fold_fingerprint(config: MerTrainConfig, data_key: str, subject: str, semantics: SemanticSetup) -> dict[str, Any]:
    return {"parameters": config.parameters(), "data": data_key, "fold": subject, "encoder": semantics.encoder}


def train_mer(config: MerTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate under LOSO (or train the final model); write RUN's outputs; return the metrics dict."""
    with deterministic_kernels(resolve_device(config.device), config.threads):
        return _train_mer(config, after_step)


def _check_config(config: MerTrainConfig) -> MerProtocol:
    if config.protocol not in PROTOCOL_NAMES:
        raise MerTrainingError(f"unknown protocol {config.protocol!r}; use one of {', '.join(PROTOCOL_NAMES)}")
    unknown = [e for e in config.experts if e not in EXPERTS]
    if unknown or not config.experts:
        raise MerTrainingError(f"--experts takes a comma-separated subset of {','.join(EXPERTS)}; got {','.join(config.experts) or 'nothing'}")
    if config.test_inputs not in TEST_INPUTS:
        raise MerTrainingError(f"unknown --test-inputs {config.test_inputs!r}; use one of {', '.join(TEST_INPUTS)}")
    if bool(config.train_on) != bool(config.test_on) or set(config.train_on) & set(config.test_on):
        raise MerTrainingError("the cross-corpus protocol needs --train-on and --test-on, naming different datasets")
    if config.final and config.train_on:
        raise MerTrainingError("--final trains on every subject; the cross-corpus fold's model is checkpoints/fold-<train>-to-<test>")
    config.experts = [e for e in EXPERTS if e in config.experts]  # canonical order
    return protocol_by_name(config.protocol)


@dataclass
class _Run:
    """What every fold of one run shares."""

    config: MerTrainConfig
    protocol: MerProtocol
    packed: PackedMer
    inputs: _Inputs
    semantics: SemanticSetup
    device: torch.device
    progress: TrainingProgress
    after_step: Callable[[int], None] | None

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def _train_mer(config: MerTrainConfig, after_step: Callable[[int], None] | None) -> dict[str, Any]:
    protocol = _check_config(config)
    device = resolve_device(config.device)
    out = Path(config.out)
    state_dir = out / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else out / "cache"

    packed = pack_unimer(config.unimer_dir, cache_dir)
    semantics = resolve_semantics(config)
    inputs, protocol_rejections = _select_inputs(packed, config, protocol, semantics, device, cache_dir)
    subjects = [cross_corpus_fold(config.train_on, config.test_on)] if config.train_on else fold_subjects(inputs.subjects)
    if len(subjects) < 2 and not config.final and not config.train_on:
        raise MerTrainingError(f"{config.unimer_dir}: leave-one-subject-out needs at least two subjects, found {len(subjects)}")

    throughput = {"samples": 0, "data_seconds": 0.0, "compute_seconds": 0.0}
    with training_progress(config.progress) as progress:
        run = _Run(config, protocol, packed, inputs, semantics, device, progress, after_step)
        parts = [FINAL_NAME] if config.final else subjects
        results: list[dict[str, Any]] = []
        for fold_index, part in enumerate(parts):
            stored = _finished_part(run, part)
            if stored is not None:
                results.append(stored)
                continue
            progress.set_description("final model, all subjects" if config.final else f"fold {fold_index + 1}/{len(subjects)} ({part})")
            result, loop = _train_part(run, part, fold_index)
            throughput["samples"] += loop.samples_seen
            throughput["data_seconds"] += loop.data_seconds
            throughput["compute_seconds"] += loop.compute_seconds
            write_bytes_atomic(state_dir / f"fold-{part}.json", json.dumps(result, sort_keys=True).encode())
            (state_dir / f"fold-{part}.pt").unlink(missing_ok=True)
            results.append(result)
            if not config.final:
                progress.set_metric("UF1 of folds so far", _pooled_uf1(results, inputs, protocol.classes))

    seconds = throughput["data_seconds"] + throughput["compute_seconds"]
    timing = {
        "samples_per_second": round(throughput["samples"] / seconds, 1) if seconds > 0 else None,
        "data_wait_share": round(throughput["data_seconds"] / seconds, 4) if seconds > 0 else None,
        "note": "this process only (folds resumed from disk are not counted)",
    }
    write_bytes_atomic(out / THROUGHPUT_NAME, (json.dumps(timing, indent=2, sort_keys=True) + "\n").encode())
    if config.final:
        metrics = write_final_outputs(run, results[0])
    else:
        metrics = write_loso_outputs(run, results, protocol_rejections)
    return {**metrics, "throughput": timing}


def _finished_part(run: _Run, part: str) -> dict[str, Any] | None:
    """The stored result of a finished fold, after checking that its checkpoint is the one it wrote.

    A fold whose checkpoint is missing or damaged is trained again (same seed: same weights)."""
    result_path = run.out / STATE_DIR / f"fold-{part}.json"
    if not result_path.is_file():
        return None
    try:
        stored = json.loads(result_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        console.print(f"{result_path}: unreadable fold result; training fold {part} again", highlight=False, soft_wrap=True)
        return None
    if stored.get("fingerprint") != _fold_fingerprint(run.config, run.packed.key, part, run.semantics):
        raise ResumeMismatchError(f"{run.out} holds folds of a run with other parameters; use another --out or delete it")
    checkpoint = run.out / stored.get("checkpoint", "")
    if not checkpoint.is_file() or file_sha256(checkpoint) != stored.get("checkpoint_sha256"):
        what = "missing" if not checkpoint.is_file() else "damaged (its content differs from what this run wrote)"
        console.print(f"{checkpoint}: {what}; training {'the final model' if part == FINAL_NAME else f'fold {part}'} again", highlight=False, soft_wrap=True)
        return None
    return stored


def checkpoint_record(run: _Run, part: str, fold_seed: int, training_subjects: list[str]) -> dict[str, Any]:
    """What a checkpoint says about itself beside the model config: what it was trained on and what it needs."""
    config = run.config
    needs = {expert: list(VIDEO_COLUMNS[expert]) for expert in config.experts}
    if run.semantics.semantic_input == "sentence-embedding" and "semantics" in needs:
        needs["semantics"] = list(ORACLE_COLUMNS)
    return {
        "classes": list(run.protocol.classes),
        "protocol": run.protocol.name,
        "label_column": run.protocol.label_column,
        "cross_corpus": {"train_on": list(config.train_on), "test_on": list(config.test_on)} if config.train_on else None,
        "held_out": None if part == FINAL_NAME else part,
        "training_subjects": training_subjects,
        "datasets": sorted(set(run.packed.datasets)),
        "data_key": run.packed.key,
        "seed": config.seed,
        "fold_seed": fold_seed,
        "test_inputs": config.test_inputs,
        "oracle": config.test_inputs == ORACLE_INPUTS,
        "inputs": needs,
        "semantic_encoder": run.semantics.encoder,
        "alignment": run.semantics.aligned,
    }


def _train_part(run: _Run, part: str, fold_index: int):
    config, inputs, device, classes = run.config, run.inputs, run.device, run.protocol.classes
    fold_array = np.asarray(inputs.folds)
    held_out = part != FINAL_NAME
    train_rows = torch.from_numpy(np.nonzero(fold_array != part)[0] if held_out else np.arange(len(fold_array)))
    test_rows = torch.from_numpy(np.nonzero(fold_array == part)[0]) if held_out else torch.zeros(0, dtype=torch.long)
    seed = config.seed * 1009 + fold_index
    seed_everything(seed)
    semantic_dim = inputs.tensors["semantics"].shape[1] if "semantics" in inputs.tensors else 1
    model_config = MerModelConfig(len(classes), list(config.experts), semantic_dim, config.hidden, config.dropout, run.semantics.semantic_input)
    model = GatedExpertsModel(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weights = _class_weights(inputs.labels_n[train_rows.to(device)], len(classes)).to(device) if config.class_weighting else None

    def fetch(positions: torch.Tensor):
        rows = train_rows[positions].to(device)
        targets = inputs.targets_nd.index_select(0, rows) if inputs.targets_nd is not None else None
        return {name: t.index_select(0, rows) for name, t in inputs.tensors.items()}, inputs.labels_n.index_select(0, rows), targets

    def step(batch) -> float:
        features, labels, targets = batch
        if config.augment:
            features = _augment(features)
        output = model(features)
        loss = F.cross_entropy(output.logits_bc, labels, weight=weights)
        if config.expert_loss_weight > 0 and len(config.experts) > 1:
            expert_losses = [F.cross_entropy(logits, labels, weight=weights) for logits in output.expert_logits_ebc]
            loss = loss + config.expert_loss_weight * torch.stack(expert_losses).mean()
        if targets is not None and output.semantic_embedding_bd is not None:
            loss = loss + config.align_weight * alignment_loss(output.semantic_embedding_bd, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def predict(rows: torch.Tensor):
        with evaluation_mode(model):
            rows = rows.to(device)
            output = model({name: t.index_select(0, rows) for name, t in inputs.tensors.items()})
            return torch.softmax(output.logits_bc, dim=1).cpu().numpy(), output.gate_be.cpu().numpy()

    def end_of_epoch(epoch: int) -> dict[str, float]:
        # monitoring only (no model selection): accuracy on the held-out subject after this epoch
        if not held_out:
            return {}
        probabilities, _ = predict(test_rows)
        correct = probabilities.argmax(axis=1) == inputs.labels_n[test_rows.to(device)].cpu().numpy()
        return {"held_out_accuracy": round(float(correct.mean()), 4)}

    spec = LoopSpec(
        model=model, optimizer=optimizer, n_items=len(train_rows), batch_size=config.batch_size, epochs=config.epochs,
        seed=seed, fetch_batch=fetch, train_step=step, end_of_epoch=end_of_epoch,
        state_path=run.out / STATE_DIR / f"fold-{part}.pt", state_kind=STATE_KIND,
        fingerprint=_fold_fingerprint(config, run.packed.key, part, run.semantics),
        checkpoint_every=config.checkpoint_every, after_step=run.after_step,
    )  # fmt: skip
    loop = run_loop(spec, run.progress)

    probabilities, gates = predict(test_rows if held_out else train_rows)
    training_subjects = sorted(set(np.asarray(inputs.subjects)[train_rows.numpy()].tolist()))
    checkpoint = Path("checkpoints") / f"{'final' if not held_out else 'fold-' + part}.safetensors"
    save_model_weights(
        run.out / checkpoint, model.state_dict(), model=MODEL_NAME,
        config={**model_config.to_dict(), **checkpoint_record(run, part, seed, training_subjects)},
    )  # fmt: skip
    result = {
        "fingerprint": spec.fingerprint,
        "subject": part,
        "rows": test_rows.tolist() if held_out else [],
        "probabilities": probabilities.round(6).tolist() if held_out else [],
        "gates": gates.round(6).tolist(),
        "history": loop.history,
        "checkpoint": checkpoint.as_posix(),
        "checkpoint_sha256": file_sha256(run.out / checkpoint),
    }
    return result, loop


def _pooled_uf1(fold_results: list[dict[str, Any]], inputs: _Inputs, classes) -> float:
    from mertk.metrics.mer import mer_scores

    labels, predicted = [], []
    for result in fold_results:
        labels += [classes[int(inputs.labels_n[row])] for row in result["rows"]]
        predicted += [classes[int(np.argmax(p))] for p in result["probabilities"]]
    return mer_scores(labels, predicted, classes)["uf1"]
