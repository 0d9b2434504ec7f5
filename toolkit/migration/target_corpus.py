"""Label migration to another corpus, streamed: the target is read shard by shard, never cached whole.

Stages over a target corpus (per-video `.npy` files or feature shards, mertk.corpora.llp_feature_shards):

1. `list_target_videos`: its videos, in a fixed order (the shards' order, or its CSVs', or its
   feature files' names), each with where its features are;
2. `target_statistics`, one task per block of videos: the centring statistics of the target's
   own features (summed in block order, so the same whatever runs the blocks), its unusable
   videos, and the raw rows of a few evenly spaced videos (the recall sample);
3. `neighbour_indexes`: the bank's unit rows per modality in a faiss index (mertk.migration.neighbours:
   exact, or HNSW tuned and measured on the sample); where the shards run in other processes
   (`index_files`), each index is written once to a file beside the run's state and workers
   memory-map it;
4. `knn_shard`, the per-shard method: read the shard's videos, normalise, k nearest bank
   segments, similarity-weighted votes -> scores and hard labels, the shard's table.

Memory of a worker: one shard of videos, plus the bank index's pages, mapped from its file and
shared by every worker of a node, whatever the target's size.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_CLASSES, NUM_SEGMENTS, LlpAnnotationError
from mertk.corpora.llp_feature_shards import ShardBlockReader, ShardedVideo, has_feature_shards, list_sharded_videos
from mertk.corpora.llp_features import FeatureLayout, read_llp_videos
from mertk.execution.blocks import BlockReader, FeatureBlock
from mertk.migration.config import MigrationError, weak_matrix
from mertk.migration.embedding import ModalityStats, Normaliser
from mertk.migration.label import pseudo_label_table, segment_similarity
from mertk.migration.migrate import MigrationModel, label_from_similarity
from mertk.migration.neighbours import (
    INDEX_SUFFIX,
    RECALL_SAMPLE_QUERIES,
    NeighbourIndex,
    build_index,
    choose_index_kind,
    neighbour_votes,
    tune_and_measure,
)
from mertk.migration.read import ReadPass
from mertk.migration.transfer import map_labels
from mertk.shards.manifest import Rejection, ShardResult

TARGET_SPLIT = "target"
STATISTICS_BLOCK_VIDEOS = 2048  # videos per statistics task
READ_VIDEOS = 256  # videos read at once inside a task: memory stays one such block


@dataclass(frozen=True)
class TargetVideo:
    """One target video: its names and, in the shard layout, where its rows are."""

    filename: str
    video_id: str
    location: ShardedVideo | None = None
    split: str = TARGET_SPLIT


@dataclass(frozen=True)
class TargetSource:
    """Reads blocks of target videos from either layout (picklable: workers open the files)."""

    root: str
    layout: FeatureLayout
    sharded: bool

    def read(self, videos: Sequence[TargetVideo]) -> FeatureBlock:
        if self.sharded:
            return ShardBlockReader(self.layout).read([v.location for v in videos])
        return BlockReader(self.root, self.layout).read([v.video_id for v in videos])


def list_target_videos(root: Path | str, layout: FeatureLayout) -> tuple[TargetSource, list[TargetVideo], list[Rejection]]:
    """The target's videos and what was rejected while listing them.

    Shard layout: every video of the shards, named as in the target's CSVs where they list it
    (`<id>_<start>_<end>`), else `<id>_0_10`. Per-video layout: the videos of its CSVs if it
    has any, else one per feature file of the first audio part.
    """
    root = Path(root)
    rejections: list[Rejection] = []
    if has_feature_shards(root):
        located, problems = list_sharded_videos(root, layout)
        rejections += [Rejection(p.file, str(p), p.file) for p in problems]
        try:
            names = {v.video_id: v.filename for v in read_llp_videos(root).videos}
        except LlpAnnotationError:  # no CSVs: a feature-only corpus (pre-training data)
            names = {}
        videos = [TargetVideo(names.get(v.video_id, f"{v.video_id}_0_10"), v.video_id, v) for v in located]
        return TargetSource(str(root), layout, True), videos, rejections
    try:
        listing = read_llp_videos(root)
        rejections += listing.rejections
        videos = [TargetVideo(v.filename, v.video_id) for v in listing.videos]
    except LlpAnnotationError:
        folder = root / layout.audio[0].folder
        if not folder.is_dir():
            raise MigrationError(
                f"{root}: no feature shards (shards/features-*.parquet|.npy), no LLP CSVs and no {layout.audio[0].folder} folder"
            ) from None
        videos = [TargetVideo(f"{path.stem}_0_10", path.stem) for path in sorted(folder.glob("*.npy"))]
    return TargetSource(str(root), layout, False), videos, rejections


# ---------------------------------------------------------------- statistics pass


@dataclass
class TargetStatistics:
    """What a block of target videos adds: statistics, unusable videos, sampled raw rows."""

    stats: dict[str, ModalityStats]
    rejected: list[tuple[int, Rejection]]  # (position in the block, why)
    sample: dict[str, np.ndarray]  # modality -> (rows, dim) float32 raw segment rows

    def add(self, other: "TargetStatistics") -> None:
        for modality in MODALITIES:
            for mine, theirs in zip(self.stats[modality].parts, other.stats[modality].parts):
                mine.add_sums(theirs.sum_d, theirs.sum_sq, theirs.count)
            self.sample[modality] = np.concatenate([self.sample[modality], other.sample[modality]])


@dataclass(frozen=True)
class StatisticsTask:
    """A block of videos for `target_statistics`; `sampled` are positions in it to sample."""

    videos: tuple[TargetVideo, ...]
    sampled: tuple[int, ...]


def target_statistics(source: TargetSource, centre: bool, task: StatisticsTask) -> TargetStatistics:
    """Statistics of one block of target videos (a plain function: any executor runs it)."""
    stats = {m: ModalityStats.for_layout(source.layout, m, centre) for m in MODALITIES}
    rejected: list[tuple[int, Rejection]] = []
    sample = {m: np.zeros((0, source.layout.dim(m)), np.float32) for m in MODALITIES}
    for first in range(0, len(task.videos), READ_VIDEOS):
        videos = task.videos[first : first + READ_VIDEOS]
        block = source.read(videos)
        good = [row for row, error in enumerate(block.errors) if error is None]
        for row, error in enumerate(block.errors):
            if error is not None:
                rejected.append((first + row, Rejection(videos[row].filename, f"{videos[row].filename}: {error}", error.file)))
        for modality in MODALITIES:
            # rejected rows are zeros: the block's sums and squares are those of the good rows
            stats[modality].add_block(block.sums[modality], block.part_squares[modality], len(good) * NUM_SEGMENTS)
            rows = [p - first for p in task.sampled if first <= p < first + len(videos) and block.errors[p - first] is None]
            if rows:
                sample[modality] = np.concatenate([sample[modality], block.arrays[modality][rows].reshape(-1, source.layout.dim(modality))])
    return TargetStatistics(stats, rejected, sample)


def statistics_tasks(videos: Sequence[TargetVideo], block_videos: int = STATISTICS_BLOCK_VIDEOS) -> list[StatisticsTask]:
    """Blocks of the target's videos, each with its share of the evenly spaced recall sample."""
    sample_videos = min(len(videos), max(1, RECALL_SAMPLE_QUERIES // NUM_SEGMENTS))
    sampled = set(np.linspace(0, len(videos) - 1, sample_videos).round().astype(int).tolist()) if videos else set()
    return [
        StatisticsTask(tuple(videos[first : first + block_videos]), tuple(p - first for p in sorted(sampled) if first <= p < first + block_videos))
        for first in range(0, len(videos), block_videos)
    ]


def merge_statistics(parts: Sequence[TargetStatistics], tasks: Sequence[StatisticsTask]) -> tuple[TargetStatistics, list[int], list[Rejection]]:
    """The target's statistics (summed in block order), its usable video positions and its rejections."""
    total, usable, rejections = parts[0], [], []
    offset = 0
    for number, (part, task) in enumerate(zip(parts, tasks)):
        if number:
            total.add(part)
        bad = {position for position, _ in part.rejected}
        rejections += [rejection for _, rejection in part.rejected]
        usable += [offset + p for p in range(len(task.videos)) if p not in bad]
        offset += len(task.videos)
    return total, usable, rejections


# ---------------------------------------------------------------- neighbours and the per-shard method


def neighbour_indexes(
    bank_rows: dict[str, np.ndarray],
    bank_labels: dict[str, np.ndarray],
    sample: dict[str, np.ndarray],
    target_segments: int,
    requested: str,
    neighbours: int,
    vote_threshold: float,
) -> tuple[dict[str, NeighbourIndex], dict[str, Any]]:
    """Per modality: the bank's index (kind from `requested` and the sizes) and what the manifest records.

    `bank_rows`: unit rows (rows, dim) float32; `sample`: normalised target rows for the recall measure.
    """
    indexes: dict[str, NeighbourIndex] = {}
    summary: dict[str, Any] = {}
    for modality in MODALITIES:
        kind = choose_index_kind(requested, bank_rows[modality].shape[0], target_segments)
        index = build_index(bank_rows[modality], kind)
        index, measure = tune_and_measure(index, bank_rows[modality], sample[modality], bank_labels[modality], neighbours, vote_threshold)
        indexes[modality] = index
        summary[modality] = {**index.parameters(), **(measure.to_dict(neighbours) if measure is not None else {"recall_at_10": 1.0})}
    return indexes, summary


def bank_labels(read: ReadPass, model: MigrationModel, mapping_c_c: np.ndarray, block_videos: int) -> dict[str, np.ndarray]:
    """Hard pseudo-labels of every bank segment, (videos * 10, 25) per modality, vocabulary-mapped."""
    weak_n_c = weak_matrix(read.units)
    labels = {m: np.zeros((read.cache.videos * NUM_SEGMENTS, NUM_CLASSES), dtype=bool) for m in MODALITIES}
    for start in range(0, read.cache.videos, block_videos):
        stop = min(start + block_videos, read.cache.videos)
        result = label_from_similarity(model, segment_similarity(model, read.cache, start, stop), weak_n_c[start:stop])
        for modality in MODALITIES:
            block = result[modality][1].reshape(-1, NUM_CLASSES)
            labels[modality][start * NUM_SEGMENTS : stop * NUM_SEGMENTS] = map_labels(block, mapping_c_c)
    return labels


def bank_unit_rows(read: ReadPass, model: MigrationModel, block_videos: int) -> dict[str, np.ndarray]:
    """{modality: (bank segments, dim) float32} unit rows of the labelled corpus (its own normalisation)."""
    rows = {}
    for modality in MODALITIES:
        normaliser = model.modality(modality).normaliser
        out = np.empty((read.cache.videos * NUM_SEGMENTS, read.cache.dims[modality]), dtype=np.float32)
        for start in range(0, read.cache.videos, block_videos):
            stop = min(start + block_videos, read.cache.videos)
            out[start * NUM_SEGMENTS : stop * NUM_SEGMENTS] = normaliser(read.cache.read(modality, start, stop)).reshape(-1, out.shape[1])
        rows[modality] = out
    return rows


@dataclass(frozen=True)
class KnnContext:
    """Everything `knn_shard` needs; put once in the object store by the Ray executor (with
    file-backed indexes, `index_files`: the index itself stays in its file)."""

    source: TargetSource
    normalisers: dict[str, Normaliser]  # the target's own centring and scaling
    indexes: dict[str, NeighbourIndex]
    bank_labels: dict[str, np.ndarray]  # modality -> (bank rows, 25) bool, vocabulary-mapped
    neighbours: int
    vote_threshold: float


def knn_context(
    source: TargetSource,
    statistics: TargetStatistics,
    target_segments: int,
    bank_rows: dict[str, np.ndarray],
    bank_labels: dict[str, np.ndarray],
    requested_index: str,
    neighbours: int,
    vote_threshold: float,
) -> tuple[KnnContext, dict[str, Any]]:
    """The per-shard context of a target run (target normalisers, bank indexes) and the index summary."""
    normalisers = {m: statistics.stats[m].frozen() for m in MODALITIES}
    sample = {m: normalisers[m](statistics.sample[m]) for m in MODALITIES}
    indexes, summary = neighbour_indexes(bank_rows, bank_labels, sample, target_segments, requested_index, neighbours, vote_threshold)
    return KnnContext(source, normalisers, indexes, bank_labels, neighbours, vote_threshold), summary


@contextlib.contextmanager
def index_files(context: KnnContext, folder: Path | str, shared: bool = True) -> Iterator[KnnContext]:
    """`context` as the processes running its shards should get it.

    With `shared` (the shards run elsewhere: Ray workers, a process pool), each modality's index
    is written to `folder/<modality>.faiss` (on the output path, which every node sees) and the
    context given carries only the files' paths, sizes and hashes: every process memory-maps them,
    so a node holds each index once, in its page cache. The files are removed when the block ends
    (an interrupted run leaves them; the next run writes the same bytes again). Without `shared`,
    `context` as it is.
    """
    if not shared:
        yield context
        return
    folder = Path(folder)
    file_backed = dataclasses.replace(
        context, indexes={m: index.to_file(folder / f"{m}{INDEX_SUFFIX}") for m, index in context.indexes.items()}
    )
    del context  # the in-memory indexes are freed once the caller lets go of them too
    try:
        yield file_backed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def knn_labels(context: KnnContext, arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (scores (n, 10, 25) float32, labels (n, 10, 25) bool)} of raw (n, 10, dim) target features."""
    result = {}
    for modality in MODALITIES:
        raw = arrays[modality]
        query_q_d = context.normalisers[modality](raw).reshape(-1, raw.shape[-1])
        votes_q_c = neighbour_votes(context.indexes[modality], query_q_d, context.bank_labels[modality], context.neighbours)
        scores = votes_q_c.reshape(raw.shape[0], NUM_SEGMENTS, NUM_CLASSES)
        result[modality] = (scores, scores >= context.vote_threshold)
    return result


def knn_shard(context: KnnContext, videos: list[TargetVideo]) -> ShardResult:
    """One output shard of target videos: read, label by k-NN votes, their rows (video, modality, segment)."""
    block = context.source.read(videos)
    good = [row for row, error in enumerate(block.errors) if error is None]
    rejections = [
        Rejection(videos[row].filename, f"{videos[row].filename}: {error}", error.file)
        for row, error in enumerate(block.errors) if error is not None
    ]
    result = knn_labels(context, {m: block.arrays[m][good] for m in MODALITIES})
    kept = [videos[row] for row in good]
    return ShardResult(pseudo_label_table(kept, result, split=TARGET_SPLIT), [v.filename for v in kept], rejections)
