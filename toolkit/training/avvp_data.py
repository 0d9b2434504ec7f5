"""LLP features, weak labels and migrated pseudo-labels -> the AVVP trainer's packed arrays.

Features are read once per video with mertk.corpora.llp_features and written into two
contiguous .npy files (audio (videos, 10, Da), visual (videos, 10, Dv), float32) under
`cache_dir/avvp-<key>/`, streamed one video at a time (an LLP-scale corpus never sits in memory
twice); later runs and epochs read those arrays (memory-mapped when large), never the per-video
files. A video whose feature file is unusable is a recorded rejection naming the file.

Pseudo-labels come only from `avvp_pseudo_label.v1` shards (the output of `mertk
migrate-labels`): hard labels and soft scores per (video, modality, segment) for the train split;
a train video without pseudo-label rows trains on its weak label alone (its segment loss is masked).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, NUM_CLASSES, NUM_SEGMENTS, WeakLabel, read_split_dense_labels
from mertk.corpora.llp_features import FeatureFileError, feature_layout, read_llp_videos, read_segment_embeddings, update_with_file_stats
from mertk.shards.io import write_bytes_atomic
from mertk.shards.layout import MANIFEST_NAME
from mertk.shards.dataset import has_manifest, open_shards
from mertk.shards.manifest import Rejection
from mertk.shards.schema import load_schema
from mertk.training.errors import TrainingError

PSEUDO_SCHEMA = load_schema("avvp_pseudo_label", 1)
MODALITY_INDEX = {"audio": 0, "visual": 1}
IN_MEMORY_LIMIT_BYTES = 4 << 30  # above this, features stay memory-mapped


class AvvpDataError(TrainingError):
    """The LLP folder or the pseudo-label directory cannot be used."""


@dataclass
class PackedLlp:
    filenames: list[str]
    splits: list[str]
    weak_v_c: np.ndarray  # bool (videos, 25)
    audio_v_t_d: np.ndarray  # float32 (videos, 10, Da), possibly a memmap
    visual_v_t_d: np.ndarray  # float32 (videos, 10, Dv)
    rejections: list[Rejection]
    inputs_seen: int
    key: str

    def rows_of(self, split: str) -> np.ndarray:
        return np.asarray([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


def _corpus_key(root: Path, features: str, videos: list[WeakLabel]) -> str:
    """Changes when the video list, the feature set or any feature file (size, mtime) changes."""
    layout = feature_layout(features)
    digest = hashlib.sha256(features.encode())
    for video in videos:
        digest.update(f"{video.filename}|{video.split}|{','.join(video.labels)}".encode())
        update_with_file_stats(digest, layout.files(root, video.video_id))
    return digest.hexdigest()[:16]


def pack_llp(root: Path | str, features: str, cache_dir: Path | str, progress: bool = True) -> PackedLlp:
    """Pack the features of every train/val/test video of `root` (or load the packed copy)."""
    from mertk.console import progress_bar
    from mertk.corpora.llp_annotations import LlpAnnotationError

    root = Path(root)
    if not root.is_dir():
        raise AvvpDataError(f"--llp {root}: not a folder")
    try:
        listing = read_llp_videos(root)
        videos = listing.videos
        layout = feature_layout(features)
    except (LlpAnnotationError, ValueError) as error:
        raise AvvpDataError(str(error)) from None
    key = _corpus_key(root, features, videos)
    folder = Path(cache_dir) / f"avvp-{features}-{key}"
    cached = _load_packed(folder, key)
    if cached is not None:
        return cached

    folder.mkdir(parents=True, exist_ok=True)
    rejections = list(listing.rejections)
    audio_dim, visual_dim = layout.dim("audio"), layout.dim("visual")
    audio_tmp = folder / f".audio.npy.tmp-{os.getpid()}"
    visual_tmp = folder / f".visual.npy.tmp-{os.getpid()}"
    audio = np.lib.format.open_memmap(audio_tmp, mode="w+", dtype=np.float32, shape=(len(videos), NUM_SEGMENTS, audio_dim))
    visual = np.lib.format.open_memmap(visual_tmp, mode="w+", dtype=np.float32, shape=(len(videos), NUM_SEGMENTS, visual_dim))
    kept: list[WeakLabel] = []
    with progress_bar(len(videos), f"packing {features} features", enabled=progress) as advance:
        for video in videos:
            try:
                embeddings = read_segment_embeddings(root, video.video_id, layout)
            except FeatureFileError as error:
                rejections.append(Rejection(input=video.filename, reason=f"{video.split}: {error.reason}", file=error.file))
            else:
                audio[len(kept)] = embeddings.audio_t_d
                visual[len(kept)] = embeddings.visual_t_d
                kept.append(video)
            advance(1)
    if not kept:
        raise AvvpDataError(f"{root}: no video has usable {features} features ({len(rejections)} rejected; first: {rejections[0].reason if rejections else '-'})")
    # shrink to the kept videos and publish atomically
    for name, array, temporary in (("audio", audio, audio_tmp), ("visual", visual, visual_tmp)):
        array.flush()
        final = np.lib.format.open_memmap(folder / f".{name}.final.tmp-{os.getpid()}", mode="w+", dtype=np.float32, shape=(len(kept), *array.shape[1:]))
        final[:] = array[: len(kept)]
        final.flush()
        del final
        os.replace(folder / f".{name}.final.tmp-{os.getpid()}", folder / f"{name}.npy")
        temporary.unlink()
    del audio, visual
    meta = {
        "key": key,
        "filenames": [v.filename for v in kept],
        "splits": [v.split for v in kept],
        "labels": [list(v.labels) for v in kept],
        "rejections": [r.__dict__ for r in rejections],
        "inputs_seen": len(videos) + len(listing.rejections),
    }
    write_bytes_atomic(folder / "meta.json", json.dumps(meta, sort_keys=True).encode())  # last: marks completion
    loaded = _load_packed(folder, key)
    assert loaded is not None
    return loaded


def _load_packed(folder: Path, key: str) -> PackedLlp | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        arrays = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in ("audio", "visual")]
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if sum(a.nbytes for a in arrays) <= IN_MEMORY_LIMIT_BYTES:
        arrays = [np.ascontiguousarray(a) for a in arrays]  # one read, then batches are memory copies
    weak = np.zeros((len(meta["filenames"]), NUM_CLASSES), dtype=bool)
    for row, labels in enumerate(meta["labels"]):
        weak[row, [LLP_CLASS_INDEX[name] for name in labels]] = True
    return PackedLlp(
        filenames=meta["filenames"],
        splits=meta["splits"],
        weak_v_c=weak,
        audio_v_t_d=arrays[0],
        visual_v_t_d=arrays[1],
        rejections=[Rejection(**r) for r in meta["rejections"]],
        inputs_seen=meta["inputs_seen"],
        key=key,
    )


@dataclass
class PseudoLabels:
    """Migrated labels of the packed videos: (videos, 2 modalities, 10, 25)."""

    hard_v_m_t_c: np.ndarray  # float32 0/1
    soft_v_m_t_c: np.ndarray  # float32 in [0, 1]
    has_v: np.ndarray  # bool: the video has pseudo-label rows (else its segment loss is masked)
    key: str
    unmatched_filenames: int  # pseudo-label videos that are not among the packed train videos


def read_pseudo_labels(directory: Path | str, packed: PackedLlp, split: str = "train") -> PseudoLabels:
    """Read `avvp_pseudo_label.v1` shards and align them with the packed videos of `split`."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    if not has_manifest(directory):
        raise AvvpDataError(f"--labels {directory}: no {MANIFEST_NAME}; point to the output directory of `mertk migrate-labels` (or say none)")
    # manifest, schema and every shard's hash, as `mertk validate` checks them
    dataset = open_shards(directory, PSEUDO_SCHEMA.name, (PSEUDO_SCHEMA.version,), produced_by="`mertk migrate-labels`")
    videos = len(packed.filenames)
    hard = np.zeros((videos, 2, NUM_SEGMENTS, NUM_CLASSES), dtype=np.float32)
    soft = np.zeros_like(hard)
    has = np.zeros(videos, dtype=bool)
    row_of = {name: i for i, name in enumerate(packed.filenames) if packed.splits[i] == split}
    unmatched: set[str] = set()
    digest = hashlib.sha256()
    for shard, path in zip(dataset.manifest.shards, dataset.shard_paths):
        digest.update(shard["sha256"].encode())
        try:
            table = pq.read_table(path, columns=["filename", "split", "modality", "segment", "labels", "scores"])
        except (OSError, ValueError) as error:
            raise AvvpDataError(f"{path}: cannot read the pseudo-label columns ({error})") from None
        columns = table.to_pydict()
        for number in range(table.num_rows):
            filename = columns["filename"][number]
            row = row_of.get(filename)
            if row is None:
                if columns["split"][number] == split:
                    unmatched.add(filename)
                continue
            modality, segment = columns["modality"][number], columns["segment"][number]
            scores = columns["scores"][number]
            if modality not in MODALITY_INDEX or not 0 <= segment < NUM_SEGMENTS or scores is None or len(scores) != NUM_CLASSES:
                raise AvvpDataError(f"{path} row {number}: {filename} has modality {modality!r}, segment {segment}, "
                                    f"{len(scores) if scores is not None else 0} scores; run `mertk validate {directory}`")
            m = MODALITY_INDEX[modality]
            for name in columns["labels"][number]:
                hard[row, m, segment, LLP_CLASS_INDEX[name]] = 1.0
            soft[row, m, segment] = scores
            has[row] = True
    return PseudoLabels(hard, soft, has, digest.hexdigest()[:16], len(unmatched))


@dataclass
class DenseTruth:
    """Dense labels of one split aligned with the packed rows of that split."""

    rows: np.ndarray  # packed row of each video
    filenames: list[str]
    audio_v_c_t: np.ndarray  # bool
    visual_v_c_t: np.ndarray
    defects: dict[str, int]


def dense_truth(root: Path | str, packed: PackedLlp, split: str) -> DenseTruth:
    """The split's eval labels (mertk.corpora.llp_annotations), for the videos that were packed."""
    _, dense = read_split_dense_labels(root, split)
    rows = packed.rows_of(split)
    filenames = [packed.filenames[i] for i in rows]
    index = [dense.index_of(name) for name in filenames]
    return DenseTruth(rows, filenames, dense.audio_v_c_t[index], dense.visual_v_c_t[index], dense.defects.counts())
