"""`mertk migrate-labels`: LLP weak labels -> dense audio / visual segment pseudo-labels.

Stages, in order (each in mertk.migration or mertk.corpora):
1. read the weak-label CSVs (train, val, test) and each video's features; an unusable feature
   file rejects its video (manifest) -- one streaming pass that also gathers the centring
   statistics, the prototype seeds and the segment cache;
2. anchors per class and modality: text anchors (file or CLIP checkpoint) where given for
   language-aligned features, otherwise prototypes seeded on single-label videos and refined;
3. thresholds per class and modality from similarity histograms (label-free Otsu, or fitted on
   the val dense labels with calibrate="val"), one streaming pass per refinement;
4. migration: scores and hard labels for every (video, modality, segment), written as
   `avvp_pseudo_label.v1` shards by the resumable sharded runner;
5. report: the 10 AVVP metrics of the pseudo-labels beside the naive baseline on every split
   with dense labels, per-class F1 plots and timelines, in `OUT/avvp_pseudo/_report.html`;
6. optionally (`target`), k-nearest-neighbour migration from the labelled segment bank to
   another corpus, written to `OUT/avvp_pseudo/target/`.
Memory: O(classes x dim x bins) for the statistics plus one block of videos.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from mertk.corpora.llp_annotations import (
    LLP_CLASSES,
    MODALITIES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    BadRow,
    DenseLabelDefects,
    DenseLabels,
    WeakLabel,
    llp_annotation_files,
    read_dense_labels,
)
from mertk.corpora.llp_features import (
    BlockReader,
    cast_float,
    FeatureLayout,
    feature_layout,
    read_llp_videos,
)
from mertk.migration.anchors import (
    AnchorError,
    PrototypeSeeds,
    SimilarityBins,
    clip_text_anchors,
    load_text_anchors,
)
from mertk.migration.embedding import ModalityStats, SegmentCache
from mertk.migration.migrate import DEFAULT_TEMPERATURE, MigrationModel, ModalityModel, label_from_similarity
from mertk.migration.thresholds import (
    PRESENT_QUANTILE,
    REFINE_PRESENT_QUANTILE,
    THRESHOLD_RULES,
    calibrated_thresholds,
    label_free_thresholds,
)
from mertk.migration.transfer import TopK, knn_votes, map_labels, read_vocabulary
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import Manifest, Rejection, ShardResult, command_line
from mertk.shards.layout import REPORT_NAME
from mertk.shards.schema import load_schema

OUTPUT_FOLDER = "avvp_pseudo"
TARGET_FOLDER = "target"
CACHE_FOLDER = "_state/segments"
GROUND_TRUTH_FILES = {"audio": "ground_truth_audio.csv", "visual": "ground_truth_visual.csv"}
SCHEMA = ("avvp_pseudo_label", 1)


class MigrationError(ValueError):
    """The run as a whole cannot proceed (bad arguments, no usable video)."""


@dataclass(frozen=True)
class MigrationConfig:
    """Every choice of the method, with its default (all recorded in the manifest)."""

    features: str = "han"  # han | clip
    r2plus1d: bool = True  # HAN visual = res152 pooled + r2plus1d_18
    text_anchors: str | None = None  # safetensors file (language-aligned features)
    clip_checkpoint: str | None = None  # CLIP state dict -> visual text anchors
    calibrate: str = "none"  # none | val
    threshold_rule: str = "midpoint"  # label-free rule: midpoint | otsu
    refine_iterations: int = 2  # prototype refinements
    fit_videos: int = 2000  # videos (evenly spaced) that anchors and thresholds are fitted on; 0 = all
    temperature: float = DEFAULT_TEMPERATURE  # soft score = sigmoid((sim - thr) / temperature)
    centre: bool = True  # centre and scale each feature part by its corpus statistics
    target: str | None = None  # another corpus in the same layout
    vocabulary: str | None = None  # JSON source class -> target class
    neighbours: int = 10  # k of the cross-corpus k-NN
    vote_threshold: float = 0.5  # share of weighted neighbour votes for a target label
    shard_videos: int = 256  # videos per output shard (20 rows each)
    block_videos: int = 512  # videos per block in the streaming passes
    workers: int = 1

    def parameters(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("workers")  # does not change the output
        return data


@dataclass
class MigrationResult:
    out_dir: Path
    manifest: Manifest
    scores: dict[str, dict[str, Any]]  # split -> {"pseudo": {...}, "naive": {...}, "videos": n}
    target: dict[str, Any] | None = None
    report: Path | None = None


@dataclass(frozen=True)
class VideoUnit:
    """One usable video: its index in the segment cache and its weak label."""

    cache_index: int
    filename: str
    video_id: str
    split: str
    classes: tuple[int, ...]


def _weak_matrix(units: Sequence[VideoUnit]) -> np.ndarray:
    """(n, 25) bool: the weak label of each unit (one scatter, no per-unit indexing)."""
    import itertools

    weak_n_c = np.zeros((len(units), NUM_CLASSES), dtype=bool)
    counts_n = np.fromiter((len(unit.classes) for unit in units), dtype=np.int64, count=len(units))
    classes = np.fromiter(itertools.chain.from_iterable(unit.classes for unit in units), dtype=np.int64, count=int(counts_n.sum()))
    weak_n_c[np.repeat(np.arange(len(units)), counts_n), classes] = True
    return weak_n_c


# ---------------------------------------------------------------- pass 1: read


@dataclass
class ReadPass:
    units: list[VideoUnit]
    rejections: list[Rejection]
    stats: dict[str, ModalityStats]
    seeds: dict[str, PrototypeSeeds]
    cache: SegmentCache


READ_BLOCK_VIDEOS = 32  # videos per read task
FIT_THREADS = 2  # blocks of the fitting sample computed at once
READ_THREADS = 2  # file reading overlaps the statistics (np.load-like reads release the GIL)


def read_corpus(
    root: Path,
    videos: Sequence[WeakLabel],
    layout: FeatureLayout,
    cache_dir: Path,
    centre: bool,
    progress: bool,
    label: str,
    seed_modalities: Sequence[str] = MODALITIES,
) -> ReadPass:
    """Read every video's features once: statistics, prototype seeds, cache; reject bad files.

    Blocks of videos are read by a small thread pool, a few blocks ahead of the main thread,
    which folds each block into the statistics, the seeds and the cache in video order (so the
    result does not depend on the threads).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from mertk.console import progress_bar

    cache = SegmentCache(cache_dir, {m: layout.dim(m) for m in MODALITIES})
    cache.open_for_writing()
    stats = {m: ModalityStats.for_layout(layout, m, centre) for m in MODALITIES}
    seeds = {m: PrototypeSeeds(layout.dim(m)) for m in MODALITIES}
    units: list[VideoUnit] = []
    rejections: list[Rejection] = []
    reader = BlockReader(root, layout, half_dtype=cache.dtype)
    blocks = [videos[first : first + READ_BLOCK_VIDEOS] for first in range(0, len(videos), READ_BLOCK_VIDEOS)]
    written = 0
    try:
        with progress_bar(len(videos), f"{label}: reading features", enabled=progress) as advance, ThreadPoolExecutor(
            READ_THREADS
        ) as pool, ThreadPoolExecutor(1) as writer:
            pending: deque = deque()
            writes: deque = deque()
            for number, block_videos in enumerate(blocks):
                while len(pending) < 2 * READ_THREADS and number + len(pending) < len(blocks):
                    pending.append(pool.submit(reader.read, [v.video_id for v in blocks[number + len(pending)]]))
                block = pending.popleft().result()
                good = [row for row, error in enumerate(block.errors) if error is None]
                for row, error in enumerate(block.errors):
                    if error is not None:
                        video = block_videos[row]
                        rejections.append(Rejection(video.filename, f"{video.filename}: {error}", error.file))
                if good:
                    chosen = slice(None) if len(good) == len(block_videos) else np.array(good)
                    while len(writes) > 2:  # the writer keeps up: at most a few blocks in memory
                        writes.popleft().result()
                    writes.append(writer.submit(cache.append_block, {m: block.half[m][chosen] for m in MODALITIES}))
                    classes = [block_videos[row].label_indices for row in good]
                    for modality in MODALITIES:
                        sums_n_d = block.sums[modality][chosen]
                        # Rejected rows are zeros: the block's sums of squares are those of the good rows.
                        stats[modality].add_block(sums_n_d, block.part_squares[modality], len(good) * NUM_SEGMENTS)
                        if modality in seed_modalities:  # not for modalities with text anchors
                            seeds[modality].add_block(classes, sums_n_d)
                    for offset, row in enumerate(good):
                        video = block_videos[row]
                        units.append(VideoUnit(written + offset, video.filename, video.video_id, video.split, video.label_indices))
                    written += len(good)
                advance(len(block_videos))
            while writes:
                writes.popleft().result()
    finally:
        cache.close()
    return ReadPass(units, rejections, stats, seeds, cache)


# ---------------------------------------------------------------- anchors and thresholds


def _text_anchors(config: MigrationConfig, layout: FeatureLayout) -> dict[str, np.ndarray]:
    anchors: dict[str, np.ndarray] = {}
    if config.text_anchors:
        anchors.update(load_text_anchors(config.text_anchors))
    if config.clip_checkpoint:
        anchors["visual"] = clip_text_anchors(config.clip_checkpoint)
    for modality, matrix in anchors.items():
        if matrix.shape[1] != layout.dim(modality):
            source = config.clip_checkpoint if modality == "visual" and config.clip_checkpoint else config.text_anchors
            raise AnchorError(
                f"{source}: {modality} text anchors have dimension {matrix.shape[1]}, but the {layout.name} "
                f"{modality} features have {layout.dim(modality)}"
            )
    return anchors


def _val_truth(root: Path, units: Sequence[VideoUnit]) -> tuple[np.ndarray, DenseLabels] | None:
    """Dense labels of the val videos among `units` (eval files), with a row mask."""
    files = llp_annotation_files(root)
    if "audio" not in files or "visual" not in files:
        return None
    labelled = np.array([u.split == "val" for u in units])
    if not labelled.any():
        return None
    dense = read_dense_labels(
        files["audio"], files["visual"], [u.filename for u in units if u.split == "val"], [u.filename for u in units if u.split != "val"]
    )
    return labelled, dense


def text_anchors_for(config: MigrationConfig, layout: FeatureLayout) -> dict[str, np.ndarray]:
    """{modality: (25, dim) text anchors} of the modalities that have them (none for HAN features by default)."""
    return _text_anchors(config, layout) if layout.language_aligned or config.text_anchors or config.clip_checkpoint else {}


def fit_model(
    root: Path,
    config: MigrationConfig,
    layout: FeatureLayout,
    read: ReadPass,
    progress: bool,
    text: dict[str, np.ndarray] | None = None,
) -> tuple[MigrationModel, dict[str, Any]]:
    """Anchors and thresholds per modality (streaming passes over the segment cache).

    `text`: the result of `text_anchors_for(config, layout)` if the caller has it already.
    """
    from mertk.console import progress_bar

    normalisers = {m: read.stats[m].frozen() for m in MODALITIES}
    text = text_anchors_for(config, layout) if text is None else text
    anchors: dict[str, np.ndarray] = {}
    anchor_source: dict[str, Any] = {}
    for modality in MODALITIES:
        if modality in text:
            anchors[modality] = text[modality]
            anchor_source[modality] = "text (CLIP checkpoint)" if modality == "visual" and config.clip_checkpoint else "text (file)"
        else:
            anchors[modality], seeded = read.seeds[modality].prototypes(normalisers[modality])
            anchor_source[modality] = {"kind": "prototypes", "seeded_from": dict(zip(LLP_CLASSES, seeded))}
    refine = {m for m in MODALITIES if m not in text}
    passes = config.refine_iterations + 1 if refine else 1
    weak_n_c = _weak_matrix(read.units)
    val = _val_truth(root, read.units) if config.calibrate == "val" else None
    if config.calibrate == "val" and val is None:
        raise MigrationError(f"{root}: --calibrate val needs val videos and AVVP_eval_audio.csv / AVVP_eval_visual.csv")
    val_rows = None
    if val is not None:
        val_rows = np.cumsum(val[0]) - 1  # unit row -> row of the val dense matrices
    sample = fit_sample(read.units, config.fit_videos, config.calibrate)
    thresholds: dict[str, np.ndarray] = {}
    rules: dict[str, list[str]] = {}
    # Each pass reads the sample's rows back from the cache (in the page cache) into one reused
    # block buffer and centres them there: fresh memory is costly, recentring is not. The norms
    # do not depend on the anchors: computed on the first pass, kept.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    block_rows = min(config.block_videos, len(sample)) * NUM_SEGMENTS
    local = threading.local()  # one block buffer per modality and thread, reused across passes
    inverse_norms: dict[tuple[int, str], np.ndarray] = {}
    firsts = range(0, len(sample), config.block_videos)

    def block_part(first: int, modality: str, bins: SimilarityBins, last: bool) -> dict[str, np.ndarray]:
        """One block of the sample, one modality: what it adds to the pass's statistics."""
        chosen = sample[first : first + config.block_videos]
        n = len(chosen)
        buffers = getattr(local, "buffers", None)
        if buffers is None:
            buffers = local.buffers = {m: np.empty((block_rows, layout.dim(m)), dtype=np.float32) for m in MODALITIES}
        # x - mean, as Normaliser.centred computes it
        centred_r_d = read.cache.read_videos_into(modality, chosen, buffers[modality][: n * NUM_SEGMENTS], normalisers[modality].mean_d)
        if (first, modality) not in inverse_norms:
            inverse_norms[first, modality] = normalisers[modality].inverse_norms(centred_r_d)
        inverse_norm_r = inverse_norms[first, modality]
        similarity_r_c = normalisers[modality].cosine(centred_r_d, inverse_norm_r, anchors[modality])
        similarity = similarity_r_c.reshape(n, NUM_SEGMENTS, NUM_CLASSES)
        truth = labelled = None
        if last and val is not None:
            labelled = val[0][chosen]
            truth = np.zeros((n, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
            dense = val[1].audio_v_c_t if modality == "audio" else val[1].visual_v_c_t
            truth[labelled] = dense[val_rows[chosen][labelled]]
        return bins.block_part(similarity, weak_n_c[chosen], centred_r_d, inverse_norm_r, truth, labelled)

    # Blocks are computed by two threads (numpy and BLAS release the GIL) and added in block order.
    pool = ThreadPoolExecutor(FIT_THREADS)
    try:
        for number in range(passes):
            last = number == passes - 1
            bins = {m: SimilarityBins(layout.dim(m), vectors=(m in refine and not last)) for m in MODALITIES}
            with progress_bar(len(sample), f"anchors: pass {number + 1}/{passes}", enabled=progress) as advance:
                tasks = [(first, m) for first in firsts for m in MODALITIES]
                parts: dict[tuple[int, str], Any] = {}
                for number_done, (first, modality) in enumerate(tasks):
                    # a few blocks ahead only: each holds a (1000, dim) float64 part until added
                    for ahead in tasks[number_done : number_done + FIT_THREADS + 1]:
                        if ahead not in parts:
                            parts[ahead] = pool.submit(block_part, ahead[0], ahead[1], bins[ahead[1]], last)
                    bins[modality].add_part(parts.pop((first, modality)).result())
                    if modality == MODALITIES[-1]:
                        advance(min(config.block_videos, len(sample) - first))
            for modality in MODALITIES:
                thresholds[modality] = label_free_thresholds(
                    bins[modality].counts_c_b,
                    bins[modality].null_counts_c_b,
                    config.threshold_rule,
                    PRESENT_QUANTILE if last else REFINE_PRESENT_QUANTILE,
                )
                rules[modality] = [f"label-free ({config.threshold_rule})" if np.isfinite(t) else "never (class absent)" for t in thresholds[modality]]
                if last and val is not None:
                    thresholds[modality], rules[modality] = calibrated_thresholds(
                        bins[modality].positive_c_b, bins[modality].negative_c_b, thresholds[modality]
                    )
                if not last and modality in refine:
                    anchors[modality] = bins[modality].refined_prototypes(
                        thresholds[modality], anchors[modality], normalisers[modality].scale_d
                    )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    model = MigrationModel(
        *(ModalityModel(normalisers[m], anchors[m], thresholds[m]) for m in MODALITIES), temperature=config.temperature
    )
    summary = {
        "anchors": anchor_source,
        "thresholds": {
            m: {name: (round(float(t), 4) if np.isfinite(t) else None) for name, t in zip(LLP_CLASSES, thresholds[m])}
            for m in MODALITIES
        },
        "threshold_rules": {m: dict(zip(LLP_CLASSES, rules[m])) for m in MODALITIES},
        "passes_over_cache": passes,
        "fit_videos": int(len(sample)),
    }
    return model, summary


def fit_sample(units: Sequence[VideoUnit] | Sequence[WeakLabel], fit_videos: int, calibrate: str) -> np.ndarray:
    """Cache indices of the videos that anchors and thresholds are fitted on, in order.

    All videos when there are at most `fit_videos` (or `fit_videos` is 0); otherwise that many,
    evenly spaced over the corpus (deterministic), plus every val video when calibrating on val.
    """
    count = len(units)
    if fit_videos <= 0 or count <= fit_videos:
        return np.arange(count)
    chosen = set(np.linspace(0, count - 1, fit_videos).round().astype(int).tolist())
    if calibrate == "val":
        chosen |= {index for index, unit in enumerate(units) if unit.split == "val"}
    return np.array(sorted(chosen), dtype=np.int64)


SIMILARITY_CHUNK_ROWS = 320


def segment_similarity(model: MigrationModel, cache: SegmentCache, start: int, stop: int) -> dict[str, np.ndarray]:
    """{modality: (n, 10, 25)} cosine of the cached videos [start, stop) to the final anchors."""
    out = {}
    for modality in MODALITIES:
        part = model.modality(modality)
        stored = cache.read_stored(modality, start, stop)
        stored_r_d = stored.reshape(-1, stored.shape[-1])
        cosine_r_c = np.empty((stored_r_d.shape[0], NUM_CLASSES), dtype=np.float32)
        # Chunks of rows small enough to stay in the CPU cache across the cast, centring, norm
        # and product (each row's result does not depend on the chunking).
        for first in range(0, stored_r_d.shape[0], SIMILARITY_CHUNK_ROWS):
            chunk = stored_r_d[first : first + SIMILARITY_CHUNK_ROWS]
            rows = cast_float(chunk, np.float32) if chunk.dtype != np.float32 else chunk.copy()
            cosine_r_c[first : first + len(rows)], _, _ = part.normaliser.centred_cosine(rows, part.anchors_c_d, overwrite=True)
        out[modality] = cosine_r_c.reshape(stop - start, NUM_SEGMENTS, NUM_CLASSES)
    return out


# ---------------------------------------------------------------- pass: label (sharded)


PREFETCH_SHARDS = 2  # shards whose similarities are computed ahead, each in its own thread


class SimilarityPrefetch:
    """Labels the next shards (similarities, scores, table) in threads while the current one is written.

    In-process labelling only (workers = 1): run_sharded labels shards in order, so the next
    shard's cache range is known; a range that was not prefetched (a resumed run skipping
    shards) is computed on the spot. Also keeps each labelled video's hard labels
    (`labels[modality]`, (videos, 25, 10) bool, a few hundred bytes per video) so that the report
    need not read the shards back.
    """

    def __init__(self, model: MigrationModel, cache: SegmentCache, units: Sequence[VideoUnit], shard_videos: int):
        from concurrent.futures import ThreadPoolExecutor

        videos = len(units)
        self.model, self.cache, self.units, self.videos, self.shard_videos = model, cache, units, videos, shard_videos
        self.pool = ThreadPoolExecutor(PREFETCH_SHARDS)
        self.futures: dict[tuple[int, int], Any] = {}
        self.labels = {m: np.zeros((videos, NUM_CLASSES, NUM_SEGMENTS), dtype=bool) for m in MODALITIES}
        self.labelled = np.zeros(videos, dtype=bool)
        self.on_labelled: Callable[[], None] | None = None  # called after each shard's labels are kept
        for first in range(0, min(videos, PREFETCH_SHARDS * shard_videos), shard_videos):  # a fresh run's first shards
            self.futures[first, min(first + shard_videos, videos)] = self.pool.submit(self.labelled_shard, first, min(first + shard_videos, videos))

    def labelled_shard(self, start: int, stop: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pa.Table]:
        """Scores and labels of the units [start, stop), and their table (the shard's rows)."""
        units = self.units[start:stop]
        result = label_from_similarity(self.model, segment_similarity(self.model, self.cache, start, stop), _weak_matrix(units))
        return result, pseudo_label_table(units, result)

    def shard(self, start: int, stop: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pa.Table]:
        future = self.futures.pop((start, stop), None)
        first = stop
        for _ in range(PREFETCH_SHARDS):
            following = (first, min(first + self.shard_videos, self.videos))
            if following[0] < following[1] and following not in self.futures:
                self.futures[following] = self.pool.submit(self.labelled_shard, *following)
            first = following[1]
        return future.result() if future is not None else self.labelled_shard(start, stop)

    def keep(self, start: int, result: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for modality in MODALITIES:
            labels_n_t_c = result[modality][1]
            self.labels[modality][start : start + len(labels_n_t_c)] = labels_n_t_c.transpose(0, 2, 1)
        self.labelled[start : start + len(result[MODALITIES[0]][1])] = True
        if self.on_labelled is not None:
            self.on_labelled()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class LabelContext:
    cache_dir: str
    dims: dict[str, int]
    model: MigrationModel
    prefetch: SimilarityPrefetch | None = None  # workers = 1 only (not picklable)


def _arrow_strings(values: Sequence[str]) -> pa.Array:
    """A string array of `values`, built from its buffers.

    Not pa.array: its first call imports pandas (a quarter of a second) to look for pandas objects.
    """
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _arrow_numbers(values: np.ndarray) -> pa.Array:
    """A 1-D numeric array over the numpy array's memory (no copy; see _arrow_strings for why not pa.array)."""
    values = np.ascontiguousarray(values).reshape(-1)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def pseudo_label_table(
    units: Sequence[VideoUnit], result: dict[str, tuple[np.ndarray, np.ndarray]], split: str | None = None
) -> pa.Table:
    """Rows (video, modality, segment) in that order; scores (n, 10, 25), labels (n, 10, 25)."""
    n = len(units)
    per_video = len(MODALITIES) * NUM_SEGMENTS
    # String columns: the n distinct values, repeated by Arrow's take (no Python object per row).
    video_rows = _arrow_numbers(np.repeat(np.arange(n, dtype=np.int32), per_video))
    filenames = _arrow_strings([u.filename for u in units]).take(video_rows)
    video_ids = _arrow_strings([u.video_id for u in units]).take(video_rows)
    splits = _arrow_strings([split or u.split for u in units]).take(video_rows)
    modality = _arrow_strings(MODALITIES).take(_arrow_numbers(np.tile(np.repeat(np.arange(len(MODALITIES), dtype=np.int32), NUM_SEGMENTS), n)))
    segment = np.tile(np.arange(NUM_SEGMENTS, dtype=np.int8), n * len(MODALITIES))
    # (n, modality, segment, class) in row order
    scores_r_c = np.stack([result[m][0] for m in MODALITIES], axis=1).reshape(n * per_video, NUM_CLASSES)
    labels_r_c = np.stack([result[m][1] for m in MODALITIES], axis=1).reshape(n * per_video, NUM_CLASSES)
    row_i, class_i = np.nonzero(labels_r_c)
    offsets = np.zeros(n * per_video + 1, dtype=np.int32)
    np.cumsum(np.bincount(row_i, minlength=n * per_video), out=offsets[1:])
    names = _arrow_strings(LLP_CLASSES).take(_arrow_numbers(class_i.astype(np.int32)))
    score_offsets = np.arange(0, (n * per_video + 1) * NUM_CLASSES, NUM_CLASSES, dtype=np.int32)
    return pa.table(
        {
            "filename": filenames,
            "video_id": video_ids,
            "split": splits,
            "modality": modality,
            "segment": _arrow_numbers(segment),
            "labels": pa.ListArray.from_arrays(_arrow_numbers(offsets), names),
            "scores": pa.ListArray.from_arrays(_arrow_numbers(score_offsets), _arrow_numbers(scores_r_c.astype(np.float32, copy=False))),
        }
    )


def label_shard(context: LabelContext, units: list[VideoUnit]) -> ShardResult:
    start, stop = units[0].cache_index, units[-1].cache_index + 1
    if context.prefetch is not None:
        result, table = context.prefetch.shard(start, stop)
        context.prefetch.keep(start, result)
        return ShardResult(table, [u.filename for u in units], [])
    similarity = segment_similarity(context.model, SegmentCache(context.cache_dir, context.dims), start, stop)
    result = label_from_similarity(context.model, similarity, _weak_matrix(units))
    return ShardResult(pseudo_label_table(units, result), [u.filename for u in units], [])


# ---------------------------------------------------------------- evaluation


def read_pseudo_matrices(out_dir: Path, filenames: Sequence[str]) -> dict[str, np.ndarray]:
    """{modality: (videos, 25, 10) bool} of the shards' hard labels, in `filenames` order."""
    from mertk.shards.dataset import read_shards
    import pyarrow.compute as pc

    table = read_shards(out_dir, columns=["filename", "modality", "segment", "labels"])
    # Vectorised lookups (hundreds of thousands of rows at LLP scale): no Python loop per row.
    wanted = pa.array(list(filenames), type=pa.string())
    video = pc.fill_null(pc.index_in(table.column("filename"), value_set=wanted), -1).to_numpy()
    is_audio = pc.equal(table.column("modality"), "audio").to_numpy()
    segment = table.column("segment").to_numpy()
    labels = table.column("labels").combine_chunks()
    parents = pc.list_parent_indices(labels).to_numpy()
    classes = pc.index_in(pc.list_flatten(labels), value_set=pa.array(LLP_CLASSES)).to_numpy().astype(np.int64)
    out = {}
    for modality, mask in (("audio", is_audio), ("visual", ~is_audio)):
        matrix = np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
        keep = mask[parents] & (video[parents] >= 0)
        matrix[video[parents][keep], classes[keep], segment[parents][keep]] = True
        out[modality] = matrix
    return out


def dense_truth(root: Path, units: Sequence[VideoUnit]) -> dict[str, tuple[list[int], DenseLabels, str]]:
    """Per split with dense labels: (unit rows, DenseLabels, source file names).

    `ground_truth_*.csv` (full truth of a generated corpus) covers every split; otherwise the
    eval files cover val and test.
    """
    out = {}
    truth_files = {m: root / name for m, name in GROUND_TRUTH_FILES.items()}
    if all(path.is_file() for path in truth_files.values()):
        source, splits = truth_files, ("train", "val", "test", "target")
    else:
        files = llp_annotation_files(root)
        if "audio" not in files or "visual" not in files:
            return out
        source, splits = {"audio": files["audio"], "visual": files["visual"]}, ("val", "test")
    rows_of = {split: [row for row, unit in enumerate(units) if unit.split == split] for split in splits}
    rows_of = {split: rows for split, rows in rows_of.items() if rows}
    if not rows_of:
        return out
    described = f"{Path(source['audio']).name} / {Path(source['visual']).name}"
    # The files are parsed once for all splits (each parse is a Python loop over every row);
    # each split's defects are those the per-split reading would report (see _defects_of_split).
    labelled = sorted(row for rows in rows_of.values() for row in rows)
    others = [unit.filename for unit in units if unit.split not in rows_of]
    dense = read_dense_labels(source["audio"], source["visual"], [units[row].filename for row in labelled], others)
    split_of = {units[row].filename: units[row].split for row in labelled}
    position = {row: index for index, row in enumerate(labelled)}
    for split, rows in rows_of.items():
        defects = _defects_of_split(dense.defects, split_of, split)
        if defects is None:  # a defect not attributable to a video: read this split on its own
            split_others = [unit.filename for unit in units if unit.split != split]
            split_dense = read_dense_labels(source["audio"], source["visual"], [units[row].filename for row in rows], split_others)
        else:
            index = [position[row] for row in rows]
            # rows_of_other_videos is not counted here (nothing reads it from this object).
            split_dense = DenseLabels(
                tuple(units[row].filename for row in rows), dense.audio_v_c_t[index], dense.visual_v_c_t[index], defects
            )
        out[split] = (rows, split_dense, described)
    return out


def _defects_of_split(defects: DenseLabelDefects, split_of: dict[str, str], split: str) -> DenseLabelDefects | None:
    """The defects that reading one split's videos alone (the other videos as `other_filenames`) reports.

    Rows about no known video and malformed rows are reported for every split alike; empty and
    out-of-range runs only for the split of their video, named first in the reason
    ("<filename> <modality> <class>: ..."). None if a reason does not name a known video.
    """
    kept: dict[str, list] = {"empty_runs": [], "out_of_range": []}
    for kind, rows in kept.items():
        for bad in getattr(defects, kind):
            owner = split_of.get(bad.reason.split(" ", 1)[0])
            if owner is None:
                return None
            if owner == split:
                rows.append(bad)
    return DenseLabelDefects(
        empty_runs=kept["empty_runs"],
        out_of_range=kept["out_of_range"],
        unknown_video=list(defects.unknown_video),
        not_in_weak_label=list(defects.not_in_weak_label),
        malformed=list(defects.malformed),
    )


def truth_and_baseline(root: Path, units: Sequence[VideoUnit]) -> dict[str, dict[str, Any]]:
    """Per split with dense labels: its truth and the naive baseline's scores (no pseudo-label needed,
    so this runs in a thread while the corpus is labelled)."""
    from mertk.metrics.avvp import avvp_scores, per_class_segment_scores
    from mertk.migration.migrate import naive_labels

    weak_n_c = _weak_matrix(units)
    out = {}
    for split, (rows, dense, source) in dense_truth(root, units).items():
        naive = naive_labels(weak_n_c[rows])
        out[split] = {
            "rows": rows,
            "dense": dense,
            "source": source,
            "weak": weak_n_c[rows],
            "scores": avvp_scores(naive, naive, dense.audio_v_c_t, dense.visual_v_c_t).to_dict(),
            "per_class_f1": {
                m: per_class_segment_scores(naive, g).f1.tolist() for m, g in (("audio", dense.audio_v_c_t), ("visual", dense.visual_v_c_t))
            },
        }
    return out


def score_split(part: dict[str, Any], predicted: dict[str, np.ndarray], units: Sequence[VideoUnit]) -> tuple[dict, dict]:
    """One split's scores (pseudo-labels beside the naive baseline) and the matrices the report draws.

    `part`: the split's entry of `truth_and_baseline`; `predicted`: {modality: (videos, 25, 10)}
    hard labels of every unit (only the split's rows are read).
    """
    from mertk.metrics.avvp import avvp_scores, per_class_segment_scores

    rows, dense = part["rows"], part["dense"]
    pred_a, pred_v = predicted["audio"][rows], predicted["visual"][rows]
    pseudo = avvp_scores(pred_a, pred_v, dense.audio_v_c_t, dense.visual_v_c_t)
    scores = {
        "videos": len(rows),
        "truth": part["source"],
        "pseudo": pseudo.to_dict(),
        "naive": part["scores"],
        "per_class_f1": {
            m: {"pseudo": per_class_segment_scores(p, g).f1.tolist(), "naive": part["per_class_f1"][m]}
            for m, p, g in (("audio", pred_a, dense.audio_v_c_t), ("visual", pred_v, dense.visual_v_c_t))
        },
        "truth_defects": dense.defects.counts(),
    }
    matrices = {
        "filenames": [units[r].filename for r in rows],
        "pred": (pred_a, pred_v),
        "truth": (dense.audio_v_c_t, dense.visual_v_c_t),
        "weak": part["weak"],
    }
    return scores, matrices


class EarlyScores:
    """Scores each split in a background thread as soon as all its videos are labelled in this process.

    Called after each labelled shard (SimilarityPrefetch.on_labelled): the splits are runs of
    units, so the train split's scores are computed while the val and test shards are labelled.
    """

    def __init__(self, baseline: Any, prefetch: SimilarityPrefetch, units: Sequence[VideoUnit], pool: Any):
        self.baseline, self.prefetch, self.units, self.pool = baseline, prefetch, units, pool
        self.futures: dict[str, Any] = {}
        self.last_rows: dict[str, int] = {}

    def __call__(self) -> None:
        if not self.baseline.done() or self.baseline.exception() is not None:
            return  # not known yet (the split is then scored at the end), or evaluate_splits reports the error
        for split, part in self.baseline.result().items():
            if split in self.futures:
                continue
            if split not in self.last_rows:  # cheap test first: is the split's last video labelled?
                self.last_rows[split] = max(part["rows"])
            if self.prefetch.labelled[self.last_rows[split]] and self.prefetch.labelled[part["rows"]].all():
                self.futures[split] = self.pool.submit(score_split, part, self.prefetch.labels, self.units)


def evaluate_splits(
    root: Path,
    out_dir: Path,
    units: Sequence[VideoUnit],
    labelled: SimilarityPrefetch | None = None,
    baseline: dict[str, dict[str, Any]] | None = None,
    early: EarlyScores | None = None,
) -> tuple[dict, dict]:
    """AVVP scores of pseudo-labels and of the naive baseline per split; and the matrices used.

    The hard labels come from `labelled` when it holds every video (labelled in this process),
    else they are read back from the shards; `baseline` is `truth_and_baseline(root, units)` if
    already computed; `early` holds splits already scored from `labelled`'s labels.
    """
    truth = truth_and_baseline(root, units) if baseline is None else baseline
    if not truth:
        return {}, {}
    in_process = labelled is not None and labelled.labelled.all()
    predicted = labelled.labels if in_process else read_pseudo_matrices(out_dir, [u.filename for u in units])
    scores, matrices = {}, {}
    for split, part in truth.items():
        if in_process and early is not None and split in early.futures:
            scores[split], matrices[split] = early.futures[split].result()
        else:
            scores[split], matrices[split] = score_split(part, predicted, units)
    return scores, matrices


# ---------------------------------------------------------------- target corpus


@dataclass(frozen=True)
class TransferContext:
    bank_dir: str
    bank_dims: dict[str, int]
    bank_videos: int
    bank_model: MigrationModel
    bank_labels: dict[str, np.ndarray]  # modality -> (bank videos * 10, 25) bool, mapped vocabulary
    target_dir: str
    target_normalisers: dict[str, Any]
    neighbours: int
    vote_threshold: float
    block_videos: int


def transfer_shard(context: TransferContext, units: list[VideoUnit]) -> ShardResult:
    bank = SegmentCache(context.bank_dir, context.bank_dims)
    target = SegmentCache(context.target_dir, context.bank_dims)
    first, last = units[0].cache_index, units[-1].cache_index + 1
    result = {}
    for modality in MODALITIES:
        query = context.target_normalisers[modality](target.read(modality, first, last))
        query_q_d = query.reshape(-1, query.shape[-1])
        top = TopK(query_q_d.shape[0], context.neighbours)
        normaliser = context.bank_model.modality(modality).normaliser
        for start in range(0, context.bank_videos, context.block_videos):
            stop = min(start + context.block_videos, context.bank_videos)
            bank_b_d = normaliser(bank.read(modality, start, stop)).reshape(-1, query_q_d.shape[1])
            top.add(query_q_d @ bank_b_d.T, start * NUM_SEGMENTS)
        scores_q_c = knn_votes(top.similarity_q_k, context.bank_labels[modality][top.index_q_k])
        scores = scores_q_c.reshape(len(units), NUM_SEGMENTS, NUM_CLASSES)
        result[modality] = (scores, scores >= context.vote_threshold)
    return ShardResult(pseudo_label_table(units, result, split="target"), [u.filename for u in units], [])


def target_videos(root: Path, layout: FeatureLayout) -> tuple[list[WeakLabel], list[BadRow]]:
    """The target's videos: from its weak-label CSVs if it has any, else from its feature files."""
    try:
        videos, bad = read_llp_videos(root)
        return [WeakLabel(v.filename, v.video_id, "target", v.labels) for v in videos], bad
    except Exception:  # no CSVs: a feature-only corpus (pre-training data)
        folder = root / layout.audio[0].folder
        if not folder.is_dir():
            raise MigrationError(f"{root}: neither LLP CSVs nor a {layout.audio[0].folder} folder found") from None
        ids = sorted(path.stem for path in folder.glob("*.npy"))
        return [WeakLabel(f"{video_id}_0_10", video_id, "target", ()) for video_id in ids], []


def bank_labels(read: ReadPass, model: MigrationModel, mapping_c_c: np.ndarray, block_videos: int) -> dict[str, np.ndarray]:
    """Hard pseudo-labels of every bank segment, (videos * 10, 25) per modality, vocabulary-mapped."""
    weak_n_c = _weak_matrix(read.units)
    labels = {m: np.zeros((read.cache.videos * NUM_SEGMENTS, NUM_CLASSES), dtype=bool) for m in MODALITIES}
    for start in range(0, read.cache.videos, block_videos):
        stop = min(start + block_videos, read.cache.videos)
        similarity = segment_similarity(model, read.cache, start, stop)
        result = label_from_similarity(model, similarity, weak_n_c[start:stop])
        for modality in MODALITIES:
            block = result[modality][1].reshape(-1, NUM_CLASSES)
            labels[modality][start * NUM_SEGMENTS : stop * NUM_SEGMENTS] = map_labels(block, mapping_c_c)
    return labels


def run_target(
    config: MigrationConfig, layout: FeatureLayout, read: ReadPass, model: MigrationModel, out_dir: Path, progress: bool
) -> dict[str, Any]:
    from mertk.metrics.avvp import avvp_scores

    target_root = Path(config.target)
    mapping_c_c = read_vocabulary(config.vocabulary)
    videos, bad_rows = target_videos(target_root, layout)
    target_out = out_dir / TARGET_FOLDER
    target_read = read_corpus(
        target_root, videos, layout, target_out / CACHE_FOLDER, config.centre, progress, "target"
    )
    pre = [Rejection(f"{row.file}:{row.line}", row.reason, row.file) for row in bad_rows] + target_read.rejections
    if not target_read.units:
        raise MigrationError(f"{target_root}: no target video has usable {layout.name} features")
    context = TransferContext(
        str(read.cache.directory),
        read.cache.dims,
        read.cache.videos,
        model,
        bank_labels(read, model, mapping_c_c, config.block_videos),
        str(target_read.cache.directory),
        {m: target_read.stats[m].frozen() for m in MODALITIES},
        config.neighbours,
        config.vote_threshold,
        config.block_videos,
    )
    manifest = run_sharded(
        target_out,
        load_schema(*SCHEMA),
        target_read.units,
        functools.partial(transfer_shard, context),
        command=command_line(),
        parameters={**config.parameters(), "target_root": str(target_root)},
        shard_size=config.shard_videos,
        pre_rejections=pre,
        workers=config.workers,
        description="target: k-NN migration",
        progress=progress,
    )
    summary: dict[str, Any] = {"videos": len(target_read.units), "rejected": len(pre)}
    truth = dense_truth(target_root, target_read.units)
    if "target" in truth:
        rows, dense, source = truth["target"]
        units = [target_read.units[r] for r in rows]
        predicted = read_pseudo_matrices(target_out, [u.filename for u in units])
        recovered = avvp_scores(predicted["audio"], predicted["visual"], dense.audio_v_c_t, dense.visual_v_c_t)
        # Chance: the same predictions given to randomly permuted videos (same label rates).
        order = np.random.default_rng(0).permutation(len(units))
        chance = avvp_scores(predicted["audio"][order], predicted["visual"][order], dense.audio_v_c_t, dense.visual_v_c_t)
        summary.update({"truth": source, "knn": recovered.to_dict(), "chance": chance.to_dict()})
    manifest.summary = summary
    manifest.write(target_out)
    target_read.cache.remove()
    return summary


# ---------------------------------------------------------------- the whole run


def _warm_imports(refine: bool) -> None:
    """Import the later stages' heavy modules in a thread while the read pass waits on files.

    `refine`: some modality has no text anchors, so prototype refinement (scipy.sparse) will run.
    """
    import importlib
    import threading

    names = ("pyarrow.compute", "pyarrow.parquet", "mertk.metrics.avvp", "mertk.migration.report", "cv2", "rich.table")

    def load() -> None:
        for name in (*names, "scipy.sparse") if refine else names:
            try:
                importlib.import_module(name)
            except ImportError:  # the stage that needs it reports the problem
                pass
        _arrow_strings(["warm"]).take(_arrow_numbers(np.zeros(1, dtype=np.int32)))  # Arrow's compute kernels load on first use

    threading.Thread(target=load, name="warm-imports", daemon=True).start()


def migrate_labels(llp: Path | str, out: Path | str, config: MigrationConfig = MigrationConfig(), progress: bool = True) -> MigrationResult:
    """Run label migration on the LLP folder `llp`; outputs under `out/avvp_pseudo/`."""
    # The pipeline runs its own threads (reader pool, prefetching labellers, shard writer) on
    # every core; BLAS threads inside each matrix product would only oversubscribe them (about
    # 10 % slower at LLP scale on 2 cores). threadpoolctl comes with scikit-learn.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without it BLAS keeps its own default
        with _freed_memory_kept():
            return _migrate_labels(llp, out, config, progress)
    with threadpool_limits(limits=1, user_api="blas"), _freed_memory_kept():
        return _migrate_labels(llp, out, config, progress)


@contextlib.contextmanager
def _freed_memory_kept():
    """glibc keeps freed blocks for reuse during the run instead of handing them back at once.

    By default glibc returns a large freed block (a block of videos, a shard's arrays) to the
    system right away, so the next block of the same size faults in fresh pages, which the kernel
    zeroes: about 5 % of the run at LLP scale. Raising its mmap and trim thresholds keeps them in
    the heap; at the end the thresholds go back to glibc's defaults (128 KiB, fixed from then on)
    and the unused heap is trimmed. Elsewhere than glibc this does nothing.
    """
    import ctypes
    import sys

    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            libc = None
    if libc is None:
        yield
        return
    trim_threshold, mmap_threshold, default = -1, -3, 128 * 1024  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    libc.mallopt(mmap_threshold, 32 << 20)  # glibc's maximum on 64-bit
    libc.mallopt(trim_threshold, 1 << 30)
    try:
        yield
    finally:
        libc.mallopt(mmap_threshold, default)
        libc.mallopt(trim_threshold, default)
        libc.malloc_trim(0)


def _migrate_labels(llp: Path | str, out: Path | str, config: MigrationConfig, progress: bool) -> MigrationResult:
    from mertk.migration.report import print_score_table, write_report

    root = Path(llp)
    out_dir = Path(out) / OUTPUT_FOLDER
    if config.calibrate not in ("none", "val"):
        raise MigrationError(f"--calibrate must be none or val, not {config.calibrate!r}")
    if config.threshold_rule not in THRESHOLD_RULES:
        raise MigrationError(f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}, not {config.threshold_rule!r}")
    if config.features not in ("han", "clip"):
        raise MigrationError(f"--features must be han or clip, not {config.features!r}")
    layout = feature_layout(config.features, config.r2plus1d)
    videos, bad_rows = read_llp_videos(root)
    text = text_anchors_for(config, layout)  # before the read: prototype seeds only where needed
    _warm_imports(refine=any(m not in text for m in MODALITIES))
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / CACHE_FOLDER
    read = read_corpus(
        root, videos, layout, cache_dir, config.centre, progress, "migrate-labels",
        seed_modalities=[m for m in MODALITIES if m not in text],
    )
    pre = [Rejection(f"{row.file}:{row.line}", row.reason, row.file) for row in bad_rows] + read.rejections
    if not read.units:
        read.cache.remove()
        first = read.rejections[0].reason if read.rejections else "no videos listed"
        raise MigrationError(f"{root}: no video has usable {layout.name} features (first problem: {first})")
    from concurrent.futures import ThreadPoolExecutor

    background = ThreadPoolExecutor(1)  # truth and naive baseline, while anchors are fitted and videos labelled
    baseline = background.submit(truth_and_baseline, root, read.units)
    try:
        model, fit_summary = fit_model(root, config, layout, read, progress, text)
        prefetch = SimilarityPrefetch(model, read.cache, read.units, config.shard_videos) if config.workers <= 1 else None
        early = None
        if prefetch is not None:
            early = prefetch.on_labelled = EarlyScores(baseline, prefetch, read.units, background)
        context = LabelContext(str(cache_dir), read.cache.dims, model, prefetch)
        try:
            manifest = run_sharded(
                out_dir,
                load_schema(*SCHEMA),
                read.units,
                functools.partial(label_shard, context),
                command=command_line(),
                parameters={**config.parameters(), "llp": str(root)},
                shard_size=config.shard_videos,
                pre_rejections=pre,
                workers=config.workers,
                description="migrate-labels: labelling",
                progress=progress,
            )
        finally:
            if prefetch is not None:
                prefetch.close()
        scores, matrices = evaluate_splits(root, out_dir, read.units, prefetch, baseline.result(), early)
        target_summary = run_target(config, layout, read, model, out_dir, progress) if config.target else None
    finally:
        background.shutdown(wait=True, cancel_futures=True)
        read.cache.remove()
    manifest.summary = {
        **fit_summary,
        "videos": {split: sum(1 for u in read.units if u.split == split) for split in ("train", "val", "test")},
        "scores": {split: {k: v for k, v in s.items() if k != "per_class_f1"} for split, s in scores.items()},
        **({"target": target_summary} if target_summary else {}),
    }
    manifest.write(out_dir)
    report = write_report(out_dir / REPORT_NAME, config, manifest, scores, matrices, target_summary)
    print_score_table(scores, target_summary)
    return MigrationResult(out_dir, manifest, scores, target_summary, report)
