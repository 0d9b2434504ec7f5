"""Reader of segment features stored as shards of many videos, streamed shard by shard.

A corpus of millions of clips is not kept as millions of small `.npy` files. In the shard layout
a corpus folder holds `shards/features-NNNNN.parquet` (or `.npy`), each file many videos, one row
per (video, segment):

- `video_id` (string), `segment` (integer 0..9): each video's 10 rows are consecutive, in
  segment order;
- one vector column per feature part of the layout, named as the part (`vggish`, `res152`,
  `r2plus1d_18`, `clip`, `clap`), of the part's dimension, float16 or float32. Every vector is
  one second's: res152, 8 frames a second in the per-video layout, is stored as its 1 s means.

Parquet: the vectors are `fixed_size_list<halffloat|float>` (or lists of that length). `.npy`: one
structured array with fields `video_id`, `segment` and one `(dim,)` sub-array per part
(`np.save`, no pickle), read memory-mapped.

Listing reads only `video_id` and `segment`; reading a block of videos reads only the row groups
(Parquet) or rows (`.npy`) that hold them, so memory is one block whatever the corpus size. A
video whose rows are not 10 consecutive segments 0..9, or that a later shard lists again, is
rejected with the file and row; a shard without the expected columns stops the run with one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.corpora.llp_features import FeatureFileError, FeatureLayout, FeaturePart
from mertk.errors import InputError
from mertk.execution.blocks import FeatureBlock, cast_float, finish_block

SHARD_FOLDER = "shards"
SHARD_PREFIX = "features-"
SHARD_FORMATS = (".parquet", ".npy")
VIDEO_COLUMN = "video_id"
SEGMENT_COLUMN = "segment"


class FeatureShardError(InputError):
    """A shard file that cannot be read as a feature shard; the message names the file."""


@dataclass(frozen=True)
class ShardedVideo:
    """Where one video's 10 rows are: shard file and first row."""

    video_id: str
    shard: str
    first_row: int


def shard_name(index: int, suffix: str) -> str:
    return f"{SHARD_PREFIX}{index:05d}{suffix}"


def has_feature_shards(root: Path | str) -> bool:
    folder = Path(root) / SHARD_FOLDER
    return folder.is_dir() and any(path.suffix in SHARD_FORMATS for path in folder.glob(f"{SHARD_PREFIX}*"))


def feature_shard_files(root: Path | str) -> list[Path]:
    """The shard files under `root/shards/`, in name order (one format only)."""
    folder = Path(root) / SHARD_FOLDER
    files = sorted(path for path in folder.glob(f"{SHARD_PREFIX}*") if path.suffix in SHARD_FORMATS)
    if not files:
        raise FeatureShardError(f"{folder}: no {SHARD_PREFIX}*.parquet or {SHARD_PREFIX}*.npy shard files")
    suffixes = {path.suffix for path in files}
    if len(suffixes) > 1:
        raise FeatureShardError(f"{folder}: holds both .parquet and .npy shards; keep one format")
    return files


# ---------------------------------------------------------------- one shard file, either format


class _ParquetShard:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several types for a file that is not Parquet
            raise FeatureShardError(f"{path}: not a readable Parquet file ({error})") from None
        self.columns = set(self.file.schema_arrow.names)
        sizes = [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.file.read(columns=[VIDEO_COLUMN, SEGMENT_COLUMN])
        return (
            np.asarray(table.column(VIDEO_COLUMN).to_pylist(), dtype=object),
            table.column(SEGMENT_COLUMN).to_numpy(),
        )

    def vectors(self, part: FeaturePart, first: int, stop: int) -> np.ndarray:
        """(stop - first, dim) of rows [first, stop), float16 or float32 as stored."""
        import pyarrow as pa

        groups = [g for g in range(len(self.group_starts) - 1) if self.group_starts[g] < stop and self.group_starts[g + 1] > first]
        column = self.file.read_row_groups(groups, columns=[part.name]).column(part.name)
        offset = first - int(self.group_starts[groups[0]])
        array = column.combine_chunks().slice(offset, stop - first) if column.num_chunks else None
        if array is None or not (pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type)):
            raise FeatureShardError(f"{self.path}: column {part.name} is {column.type}, expected a list of {part.dim} floats")
        if pa.types.is_list(array.type):
            import pyarrow.compute as pc

            lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
            if (lengths != part.dim).any():
                row = first + int(np.flatnonzero(lengths != part.dim)[0])
                raise FeatureShardError(f"{self.path}: row {row}: {part.name} has {lengths[row - first]} values, expected {part.dim}")
        values = array.flatten().to_numpy(zero_copy_only=False)
        if not np.issubdtype(values.dtype, np.floating) or values.size != (stop - first) * part.dim:
            raise FeatureShardError(f"{self.path}: column {part.name} holds {array.type}, expected {part.dim} floats a row")
        return values.reshape(stop - first, part.dim)


class _NpyShard:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise FeatureShardError(f"{path}: not a readable .npy array ({error})") from None
        names = self.array.dtype.names
        if self.array.ndim != 1 or names is None:
            raise FeatureShardError(f"{path}: expected a 1-D structured array (video_id, segment, one field per feature part)")
        self.columns = set(names)

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self.array[VIDEO_COLUMN]
        ids = ids.astype(str) if ids.dtype.kind in "SU" else ids
        return np.asarray(ids, dtype=object), np.asarray(self.array[SEGMENT_COLUMN])

    def vectors(self, part: FeaturePart, first: int, stop: int) -> np.ndarray:
        field = self.array.dtype.fields[part.name][0]
        if field.shape != (part.dim,) or not np.issubdtype(field.base, np.floating):
            raise FeatureShardError(f"{self.path}: field {part.name} is {field}, expected ({part.dim},) floats")
        return np.array(self.array[part.name][first:stop])


def open_shard(path: Path | str, layout: FeatureLayout) -> _ParquetShard | _NpyShard:
    """A shard file with its columns checked against `layout` (FeatureShardError naming what is missing)."""
    path = Path(path)
    shard = _ParquetShard(path) if path.suffix == ".parquet" else _NpyShard(path)
    wanted = [VIDEO_COLUMN, SEGMENT_COLUMN, *(part.name for m in MODALITIES for part in layout.parts(m))]
    missing = [name for name in wanted if name not in shard.columns]
    if missing:
        raise FeatureShardError(
            f"{path}: no column {', '.join(missing)} (a {layout.name} feature shard has {', '.join(wanted)})"
        )
    return shard


# ---------------------------------------------------------------- listing


def list_sharded_videos(root: Path | str, layout: FeatureLayout) -> tuple[list[ShardedVideo], list[FeatureFileError]]:
    """Every video of the shards under `root`, in shard and row order, and the rejected ones.

    Reads the `video_id` and `segment` columns only, one shard at a time.
    """
    videos: list[ShardedVideo] = []
    problems: list[FeatureFileError] = []
    seen: dict[str, str] = {}
    expected_t = np.arange(NUM_SEGMENTS)
    for path in feature_shard_files(root):
        ids, segments = open_shard(path, layout).keys()
        if len(ids) == 0:
            continue
        starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
        stops = np.append(starts[1:], len(ids))
        for start, stop in zip(starts.tolist(), stops.tolist()):
            video_id = str(ids[start])
            where = f"{path}: rows {start}-{stop - 1}"
            if video_id in seen:
                problems.append(FeatureFileError(where, f"video {video_id} already listed in {seen[video_id]}"))
            elif stop - start != NUM_SEGMENTS or not np.array_equal(segments[start:stop], expected_t):
                problems.append(
                    FeatureFileError(where, f"video {video_id} has segments {segments[start:stop].tolist()}, expected 0..9 once each, in order")
                )
            else:
                videos.append(ShardedVideo(video_id, str(path), start))
            seen.setdefault(video_id, str(path))
    return videos, problems


# ---------------------------------------------------------------- reading blocks


class ShardBlockReader:
    """Reads blocks of sharded videos into FeatureBlocks, as mertk.execution.blocks.BlockReader does for per-video files."""

    def __init__(self, layout: FeatureLayout, half_dtype: type | None = None):
        self.layout = layout
        self.half_dtype = half_dtype
        self._open: dict[str, _ParquetShard | _NpyShard] = {}

    def _shard(self, path: str) -> _ParquetShard | _NpyShard:
        shard = self._open.get(path)
        if shard is None:
            self._open.clear()  # one open shard at a time: blocks follow shard order
            shard = self._open[path] = open_shard(path, self.layout)
        return shard

    def read(self, videos: Sequence[ShardedVideo]) -> FeatureBlock:
        n = len(videos)
        arrays = {m: np.empty((n, NUM_SEGMENTS, self.layout.dim(m)), dtype=np.float32) for m in MODALITIES}
        errors: list[FeatureFileError | None] = [None] * n
        by_shard: dict[str, list[int]] = {}
        for row, video in enumerate(videos):
            by_shard.setdefault(video.shard, []).append(row)
        for path, rows in by_shard.items():
            shard = self._shard(path)
            firsts = np.array([videos[row].first_row for row in rows])
            first, stop = int(firsts.min()), int(firsts.max()) + NUM_SEGMENTS
            # rows of each video inside the read range
            take_r = (firsts[:, None] - first + np.arange(NUM_SEGMENTS)).reshape(-1)
            for modality in MODALITIES:
                start = 0
                for part in self.layout.parts(modality):
                    stored = shard.vectors(part, first, stop)[take_r]
                    values = cast_float(stored, np.float32) if stored.dtype != np.float32 else stored
                    arrays[modality][rows, :, start : start + part.dim] = values.reshape(len(rows), NUM_SEGMENTS, part.dim)
                    start += part.dim
        sums = {m: arrays[m].sum(axis=1, dtype=np.float64) for m in MODALITIES}
        for row in np.flatnonzero(~(np.isfinite(sums["audio"]).all(axis=1) & np.isfinite(sums["visual"]).all(axis=1))):
            video = videos[row]
            bad = ~np.isfinite(np.concatenate([arrays[m][row] for m in MODALITIES], axis=1))
            if bad.any():  # a float32 overflow of the sum alone is not an error
                segment = int(np.argwhere(bad)[0][0])
                errors[row] = FeatureFileError(
                    f"{video.shard}: row {video.first_row + segment}", f"video {video.video_id}: {int(bad.sum())} non-finite values"
                )
                for modality in MODALITIES:
                    arrays[modality][row] = 0.0
                    sums[modality][row] = 0.0
        return finish_block(self.layout, [v.video_id for v in videos], arrays, sums, errors, self.half_dtype)
