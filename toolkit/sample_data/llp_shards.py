"""The sample LLP corpus in the shard layout (`mertk sample-data llp --layout shards`), at any size.

The same videos, annotation files, truth and text anchors as the per-video layout
(mertk.sample_data.llp, whose per-video generator makes every vector), with the features written
as `shards/features-NNNNN.parquet|.npy` of `videos_per_shard` videos each (the layout read by
mertk.corpora.llp_feature_shards): one row per (video, segment), one vector column per feature
part, float16 by default.

Past LLP's 11,849 videos the corpus goes on with pre-training-style videos listed in no CSV (ids
`pt` + 9 digits, as a feature-only corpus such as VGGSound or AudioSet): each takes the weak label
of a real train video in turn and a timeline drawn from the real patterns of its classes; its
truth is in the ground-truth files like every other video's. Videos are generated and written
one shard at a time, so memory does not grow with `videos`.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mertk.corpora.llp_annotations import GROUND_TRUTH_FILES, WeakLabel, read_dense_labels, read_weak_labels
from mertk.corpora.llp_feature_shards import SEGMENT_COLUMN, SHARD_FOLDER, VIDEO_COLUMN, shard_name
from mertk.corpora.llp_features import pool_to_segments
from mertk.migration.anchors import TEXT_ANCHOR_FILE
from mertk.sample_data.folder import INFO_NAME, SampleDataError
from mertk.sample_data.llp import (
    EVAL_FILES,
    FEATURE_SPECS,
    GENERATOR,
    REAL_SPLIT_SIZES,
    SPLIT_FILES,
    FeatureSpec,
    LlpSampleSummary,
    PlantedVideo,
    write_corpus_files,
    annotation_files,
    annotation_source,
    check_out_dir,
    dense_rows,
    feature_array,
    make_world,
    plan_corpus,
    segment_vectors,
    split_sizes,
    synthesise_timeline,
    text_anchor_bytes,
    timeline_patterns,
)

LAYOUTS = ("videos", "shards")
SHARD_FEATURE_SETS = {
    "all": tuple(spec.name for spec in FEATURE_SPECS),
    "han": ("vggish", "res152", "r2plus1d_18"),
    "clip": ("clip", "clap"),
}
SHARD_FORMATS = {"parquet": ".parquet", "npy": ".npy"}
SHARD_DTYPES = {"float16": np.float16, "float32": np.float32}
PRETRAINING_PREFIX = "pt"
ROW_GROUP_VIDEOS = 128  # Parquet row group: a reader of a few videos reads this many at most


@dataclass(frozen=True)
class ShardLayoutOptions:
    videos_per_shard: int = 1000
    features: str = "all"  # all | han | clip: which feature parts the shards carry
    file_format: str = "parquet"  # parquet | npy
    dtype: str = "float16"


def _check(options: ShardLayoutOptions, videos: int) -> None:
    if videos < 1:
        raise SampleDataError(f"--videos must be at least 1, got {videos}")
    if options.videos_per_shard < 1:
        raise SampleDataError(f"--shard-videos must be at least 1, got {options.videos_per_shard}")
    for value, allowed, flag in (
        (options.features, SHARD_FEATURE_SETS, "--features"),
        (options.file_format, SHARD_FORMATS, "--shard-format"),
        (options.dtype, SHARD_DTYPES, "--shard-dtype"),
    ):
        if value not in allowed:
            raise SampleDataError(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")


def pretraining_videos(source: Path, seed: int, first: int, count: int) -> Iterator[PlantedVideo]:
    """Videos `first` .. `first + count - 1` past LLP: real train weak labels in turn, drawn timelines."""
    train = read_weak_labels(source / SPLIT_FILES["train"], "train")
    eval_weak = read_weak_labels(source / SPLIT_FILES["val"], "val") + read_weak_labels(source / SPLIT_FILES["test"], "test")
    dense = read_dense_labels(source / EVAL_FILES["audio"], source / EVAL_FILES["visual"], eval_weak)
    by_class, every = timeline_patterns(dense.audio_v_c_t, dense.visual_v_c_t, eval_weak)
    for number in range(first, first + count):
        borrowed = train[number % len(train)]
        video_id = f"{PRETRAINING_PREFIX}{number:09d}"
        record = WeakLabel(f"{video_id}_0_10", video_id, "pretraining", borrowed.labels)
        audio_c_t, visual_c_t = synthesise_timeline(record, seed, by_class, every)
        yield PlantedVideo(record, audio_c_t, visual_c_t)


def segment_rows(spec: FeatureSpec, video: PlantedVideo, world, seed: int) -> np.ndarray:
    """(10, dim) float32: the vectors the per-video file of `spec` holds, pooled to 1 s segments."""
    array = feature_array(spec, segment_vectors(spec, video, world, seed), seed, video.weak.filename)
    return pool_to_segments(array) if array.shape[0] != 10 else array


def write_feature_shard(path: Path, videos: Sequence[PlantedVideo], specs: Sequence[FeatureSpec], world, seed: int, dtype) -> None:
    """One shard file of `videos` (row order: video, then segment), temporary-then-rename."""
    ids = np.repeat(np.array([v.weak.video_id for v in videos]), 10)
    segments = np.tile(np.arange(10, dtype=np.int8), len(videos))
    vectors = {spec.name: np.concatenate([segment_rows(spec, v, world, seed) for v in videos]).astype(dtype) for spec in specs}
    temporary = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npy":
        fields = [(VIDEO_COLUMN, f"<U{max(len(i) for i in ids)}"), (SEGMENT_COLUMN, "<i1")]
        fields += [(spec.name, np.dtype(dtype).str, (spec.dim,)) for spec in specs]
        records = np.empty(len(ids), dtype=fields)
        records[VIDEO_COLUMN], records[SEGMENT_COLUMN] = ids, segments
        for spec in specs:
            records[spec.name] = vectors[spec.name]
        with open(temporary, "wb") as handle:
            np.save(handle, records, allow_pickle=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {VIDEO_COLUMN: pa.array(ids.tolist(), pa.string()), SEGMENT_COLUMN: pa.array(segments)}
        for spec in specs:
            columns[spec.name] = pa.FixedSizeListArray.from_arrays(pa.array(vectors[spec.name].reshape(-1)), spec.dim)
        # Vectors are noise-like: compression would cost time and save little; the keys compress well.
        compression = {VIDEO_COLUMN: "zstd", SEGMENT_COLUMN: "zstd", **{spec.name: "none" for spec in specs}}
        pq.write_table(pa.table(columns), temporary, compression=compression, row_group_size=ROW_GROUP_VIDEOS * 10)
    temporary.replace(path)


def make_sample_llp_shards(
    out: Path | str,
    *,
    videos: int,
    seed: int = 0,
    options: ShardLayoutOptions = ShardLayoutOptions(),
    source: Path | str | None = None,
    progress: bool = True,
) -> LlpSampleSummary:
    """Write `videos` videos in the shard layout to `out` (see the module docstring); same seed -> same bytes.

    `source`: a folder with the real LLP annotation files (default: the copy in the package).
    """
    from mertk.console import progress_bar

    _check(options, videos)
    out = Path(out)
    specs = [spec for spec in FEATURE_SPECS if spec.name in SHARD_FEATURE_SETS[options.features]]
    dtype = SHARD_DTYPES[options.dtype]
    suffix = SHARD_FORMATS[options.file_format]
    with annotation_source(source) as folder:
        planted = plan_corpus(folder, seed, split_sizes(0, 0, 0, min(videos, sum(REAL_SPLIT_SIZES.values()))))
        files = annotation_files(folder, planted)
        world = make_world()
        files[TEXT_ANCHOR_FILE] = text_anchor_bytes(world)
        info = {"generator": GENERATOR, "seed": seed, "videos": videos, "layout": "shards", **asdict(options)}
        files[INFO_NAME] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
        check_out_dir(out, files)
        write_corpus_files(out, files)
        shutil.rmtree(out / SHARD_FOLDER, ignore_errors=True)  # an earlier corpus' shards
        (out / SHARD_FOLDER).mkdir()
        extra = pretraining_videos(folder, seed, len(planted), videos - len(planted))
        truth_handles = {m: open(out / name, "a", encoding="utf-8") for m, name in GROUND_TRUTH_FILES.items()}
        try:
            with progress_bar(videos, "sample-data llp: feature shards", enabled=progress) as advance:
                for index, first in enumerate(range(0, videos, options.videos_per_shard)):
                    count = min(options.videos_per_shard, videos - first)
                    chunk = planted[first : first + count]
                    if len(chunk) < count:
                        extras = [next(extra) for _ in range(count - len(chunk))]
                        for video in extras:  # their truth, after the LLP videos' (in annotation_files)
                            for modality, handle in truth_handles.items():
                                lines = dense_rows(video.weak.filename, video.audio_c_t if modality == "audio" else video.visual_c_t)
                                handle.write("".join(line + "\n" for line in lines))
                        chunk = [*chunk, *extras]
                    write_feature_shard(out / SHARD_FOLDER / shard_name(index, suffix), chunk, specs, world, seed, dtype)
                    advance(count)
        finally:
            for handle in truth_handles.values():
                handle.close()
    counts = {split: sum(1 for v in planted if v.weak.split == split) for split in SPLIT_FILES}
    counts["pretraining"] = videos - len(planted)
    return LlpSampleSummary(out, counts, -(-videos // options.videos_per_shard))
