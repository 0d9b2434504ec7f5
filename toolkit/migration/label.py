"""Label: every cached video's similarity to the final anchors -> scores, hard labels, shard rows.

`label_shard` is the per-shard function the sharded runner calls; the rows of a shard are built
straight from numpy buffers into an Arrow table (`pseudo_label_table`), one row per (video,
modality, segment) in that order, as the `avvp_pseudo_label.v1` schema lists them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES, NUM_CLASSES, NUM_SEGMENTS
from mertk.execution.blocks import cast_float
from mertk.migration.config import VideoUnit, weak_matrix
from mertk.migration.embedding import SegmentCache
from mertk.migration.migrate import MigrationModel, label_from_similarity
from mertk.shards.manifest import ShardResult

SIMILARITY_CHUNK_ROWS = 320  # rows per step: small enough to stay in the CPU cache from cast to product

Labelled = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (scores (n, 10, 25) float32, labels (n, 10, 25) bool)


def segment_similarity(model: MigrationModel, cache: SegmentCache, start: int, stop: int) -> dict[str, np.ndarray]:
    """{modality: (n, 10, 25)} cosine of the cached videos [start, stop) to the final anchors."""
    out = {}
    for modality in MODALITIES:
        part = model.modality(modality)
        stored = cache.read_stored(modality, start, stop)
        stored_r_d = stored.reshape(-1, stored.shape[-1])
        cosine_r_c = np.empty((stored_r_d.shape[0], NUM_CLASSES), dtype=np.float32)
        # Cast, centring, norm and product chunk by chunk (each row's result does not depend on the chunking).
        for first in range(0, stored_r_d.shape[0], SIMILARITY_CHUNK_ROWS):
            chunk = stored_r_d[first : first + SIMILARITY_CHUNK_ROWS]
            rows = cast_float(chunk, np.float32) if chunk.dtype != np.float32 else chunk.copy()
            cosine_r_c[first : first + len(rows)], _, _ = part.normaliser.centred_cosine(rows, part.anchors_c_d, overwrite=True)
        out[modality] = cosine_r_c.reshape(stop - start, NUM_SEGMENTS, NUM_CLASSES)
    return out


def arrow_strings(values: Sequence[str]) -> pa.Array:
    """A string array of `values`, built from its buffers.

    Not pa.array: its first call imports pandas to look for pandas objects.
    """
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def arrow_numbers(values: np.ndarray) -> pa.Array:
    """A 1-D numeric array over the numpy array's memory (no copy; see arrow_strings for why not pa.array)."""
    values = np.ascontiguousarray(values).reshape(-1)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def pseudo_label_table(units: Sequence[VideoUnit], result: Labelled, split: str | None = None) -> pa.Table:
    """Rows (video, modality, segment) in that order; scores (n, 10, 25), labels (n, 10, 25)."""
    n = len(units)
    per_video = len(MODALITIES) * NUM_SEGMENTS
    # String columns: the n distinct values, repeated by Arrow's take (no Python object per row).
    video_rows = arrow_numbers(np.repeat(np.arange(n, dtype=np.int32), per_video))
    filenames = arrow_strings([u.filename for u in units]).take(video_rows)
    video_ids = arrow_strings([u.video_id for u in units]).take(video_rows)
    splits = arrow_strings([split or u.split for u in units]).take(video_rows)
    modality = arrow_strings(MODALITIES).take(arrow_numbers(np.tile(np.repeat(np.arange(len(MODALITIES), dtype=np.int32), NUM_SEGMENTS), n)))
    segment = np.tile(np.arange(NUM_SEGMENTS, dtype=np.int8), n * len(MODALITIES))
    # (n, modality, segment, class) in row order
    scores_r_c = np.stack([result[m][0] for m in MODALITIES], axis=1).reshape(n * per_video, NUM_CLASSES)
    labels_r_c = np.stack([result[m][1] for m in MODALITIES], axis=1).reshape(n * per_video, NUM_CLASSES)
    row_i, class_i = np.nonzero(labels_r_c)
    offsets = np.zeros(n * per_video + 1, dtype=np.int32)
    np.cumsum(np.bincount(row_i, minlength=n * per_video), out=offsets[1:])
    names = arrow_strings(LLP_CLASSES).take(arrow_numbers(class_i.astype(np.int32)))
    score_offsets = np.arange(0, (n * per_video + 1) * NUM_CLASSES, NUM_CLASSES, dtype=np.int32)
    return pa.table(
        {
            "filename": filenames,
            "video_id": video_ids,
            "split": splits,
            "modality": modality,
            "segment": arrow_numbers(segment),
            "labels": pa.ListArray.from_arrays(arrow_numbers(offsets), names),
            "scores": pa.ListArray.from_arrays(arrow_numbers(score_offsets), arrow_numbers(scores_r_c.astype(np.float32, copy=False))),
        }
    )


def label_videos(model: MigrationModel, cache: SegmentCache, units: Sequence[VideoUnit], start: int, stop: int) -> tuple[Labelled, pa.Table]:
    """Scores and labels of the cached videos [start, stop) (units[start:stop]), and their shard rows."""
    chosen = units[start:stop]
    result = label_from_similarity(model, segment_similarity(model, cache, start, stop), weak_matrix(chosen))
    return result, pseudo_label_table(chosen, result)


class KeptLabels:
    """Each labelled video's hard labels ({modality: (videos, 25, 10) bool}, a few hundred bytes a
    video), kept while labelling in this process so that evaluation need not read the shards back."""

    def __init__(self, videos: int):
        self.labels = {m: np.zeros((videos, NUM_CLASSES, NUM_SEGMENTS), dtype=bool) for m in MODALITIES}
        self.labelled = np.zeros(videos, dtype=bool)
        self.on_labelled: Callable[[], None] | None = None  # called after each shard's labels are kept

    def keep(self, start: int, result: Labelled) -> None:
        for modality in MODALITIES:
            labels_n_t_c = result[modality][1]
            self.labels[modality][start : start + len(labels_n_t_c)] = labels_n_t_c.transpose(0, 2, 1)
        self.labelled[start : start + len(result[MODALITIES[0]][1])] = True
        if self.on_labelled is not None:
            self.on_labelled()


@dataclass(frozen=True)
class LabelContext:
    """What `label_shard` needs. `prefetched` and `kept`: in-process labelling only (not picklable)."""

    cache_dir: str
    dims: dict[str, int]
    model: MigrationModel
    prefetched: Any = None  # a RangePrefetch of label_videos over the units, ahead of the runner
    kept: KeptLabels | None = None


def label_shard(context: LabelContext, units: list[VideoUnit]) -> ShardResult:
    """The shard of `units` (consecutive cache indices): every (video, modality, segment) row."""
    start, stop = units[0].cache_index, units[-1].cache_index + 1
    if context.prefetched is not None:
        result, table = context.prefetched.get(start, stop)
    else:
        cache = SegmentCache(context.cache_dir, context.dims)
        result = label_from_similarity(context.model, segment_similarity(context.model, cache, start, stop), weak_matrix(units))
        table = pseudo_label_table(units, result)
    if context.kept is not None:
        context.kept.keep(start, result)
    return ShardResult(table, [u.filename for u in units], [])
