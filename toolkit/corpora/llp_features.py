"""Reader of LLP segment features as they lie on disk, and of the videos they belong to.

Two feature sets, chosen with `--features`:

- `han` (the layout of the HAN baseline): audio `feats/vggish/<id>.npy` (10, 128); visual
  `feats/res152/<id>.npy` (80, 2048, 8 frames a second) pooled to (10, 2048) by the mean over
  each group of 8 frames, optionally followed by `feats/r2plus1d_18/<id>.npy` (10, 512).
- `clip` (language-aligned, the layout of later work): visual `CLIP/features/<id>.npy`
  (10, 768), audio `CLAP/features/<id>.npy` (10, 768).

A file that is missing, truncated, not a .npy array, of the wrong shape, not floating point or
holding a non-finite value raises FeatureFileError, whose message names the file: the caller
rejects that video and goes on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import (
    NUM_SEGMENTS,
    BadRow,
    LlpAnnotationError,
    WeakLabel,
    llp_annotation_files,
    read_weak_labels,
)

FEATURE_SETS = ("han", "clip")
SPLITS = ("train", "val", "test")


class FeatureFileError(ValueError):
    """One feature file cannot be used; `file` is its path, `reason` what is wrong."""

    def __init__(self, file: Path | str, reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{file}: {reason}")


@dataclass(frozen=True)
class FeaturePart:
    """One extractor's files: `folder/<id>.npy` of shape (rows, dim), pooled to 10 rows."""

    name: str
    folder: str
    rows: int
    dim: int


VGGISH = FeaturePart("vggish", "feats/vggish", 10, 128)
RES152 = FeaturePart("res152", "feats/res152", 80, 2048)
R2PLUS1D = FeaturePart("r2plus1d_18", "feats/r2plus1d_18", 10, 512)
CLIP_VISUAL = FeaturePart("clip", "CLIP/features", 10, 768)
CLAP_AUDIO = FeaturePart("clap", "CLAP/features", 10, 768)


@dataclass(frozen=True)
class FeatureLayout:
    """Which parts make each modality's segment embedding (concatenated in this order)."""

    name: str
    audio: tuple[FeaturePart, ...]
    visual: tuple[FeaturePart, ...]
    language_aligned: bool

    def parts(self, modality: str) -> tuple[FeaturePart, ...]:
        return self.audio if modality == "audio" else self.visual

    def dim(self, modality: str) -> int:
        return sum(part.dim for part in self.parts(modality))

    def files(self, root: Path | str, video_id: str) -> list[Path]:
        return [Path(root) / part.folder / f"{video_id}.npy" for part in (*self.audio, *self.visual)]


def feature_layout(features: str, r2plus1d: bool = True) -> FeatureLayout:
    """The layout of `--features han|clip`; `r2plus1d` appends r2plus1d_18 to HAN's visual part."""
    if features == "han":
        visual = (RES152, R2PLUS1D) if r2plus1d else (RES152,)
        return FeatureLayout("han", (VGGISH,), visual, language_aligned=False)
    if features == "clip":
        return FeatureLayout("clip", (CLAP_AUDIO,), (CLIP_VISUAL,), language_aligned=True)
    raise ValueError(f"unknown feature set {features!r}; choose one of {', '.join(FEATURE_SETS)}")


@dataclass(frozen=True)
class SegmentEmbeddings:
    """One video's per-second embeddings: audio_t_d (10, Da), visual_t_d (10, Dv), float32."""

    video_id: str
    audio_t_d: np.ndarray
    visual_t_d: np.ndarray

    def modality(self, modality: str) -> np.ndarray:
        return self.audio_t_d if modality == "audio" else self.visual_t_d


def read_feature_file(path: Path | str, rows: int, dim: int, check_finite: bool = True) -> np.ndarray:
    """A (rows, dim) float32 array from a .npy file, or FeatureFileError naming the file.

    `check_finite=False` leaves the finiteness check to the caller (see `check_finite_values`).
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(path, "missing feature file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FeatureFileError(path, f"truncated or not a .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise FeatureFileError(path, "not a single .npy array")
    if array.shape != (rows, dim):
        raise FeatureFileError(path, f"shape {tuple(array.shape)}, expected ({rows}, {dim})")
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureFileError(path, f"dtype {array.dtype}, expected floating point")
    array = array.astype(np.float32, copy=False)
    if check_finite:
        check_finite_values(path, array, array)
    return array


def check_finite_values(path: Path | str, summary: np.ndarray, array: np.ndarray) -> None:
    """Raise FeatureFileError if `array` holds NaN or infinity.

    `summary` is `array` or anything computed from it that a non-finite value would spread to
    (e.g. its pooled means): one cheap sum over it decides; only a suspicious sum (NaN, inf, or
    a float32 overflow) triggers the exact element-wise check that names the first bad row.
    """
    if np.isfinite(summary.sum()):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.size(finite) - np.count_nonzero(finite))
        first_row = int(np.argwhere(~finite)[0][0])
        raise FeatureFileError(path, f"{bad} non-finite values (first in row {first_row})")


def pool_to_segments(frames_f_d: np.ndarray, segments: int = NUM_SEGMENTS) -> np.ndarray:
    """(frames, dim) -> (segments, dim): mean over consecutive equal groups (80 -> 10: groups of 8)."""
    frames, dim = frames_f_d.shape
    if frames % segments:
        raise ValueError(f"{frames} frames do not split into {segments} equal segments")
    return frames_f_d.reshape(segments, frames // segments, dim).mean(axis=1, dtype=np.float32)


def _read_modality(root: Path, video_id: str, parts: tuple[FeaturePart, ...]) -> np.ndarray:
    pieces = []
    for part in parts:
        path = root / part.folder / f"{video_id}.npy"
        array = read_feature_file(path, part.rows, part.dim, check_finite=False)
        pooled = pool_to_segments(array) if part.rows != NUM_SEGMENTS else array
        check_finite_values(path, pooled, array)  # NaN / inf survive the pooling mean
        pieces.append(pooled)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


def read_segment_embeddings(root: Path | str, video_id: str, layout: FeatureLayout) -> SegmentEmbeddings:
    """Both modalities of one video; FeatureFileError (naming the file) on any unusable file."""
    root = Path(root)
    return SegmentEmbeddings(
        video_id, _read_modality(root, video_id, layout.audio), _read_modality(root, video_id, layout.visual)
    )


def read_llp_videos(root: Path | str, splits: tuple[str, ...] = SPLITS) -> tuple[list[WeakLabel], list[BadRow]]:
    """The videos of the weak-label CSVs of `splits` under `root`, in file order, and bad rows.

    A video listed in more than one split is kept in the first and its later rows are returned
    as bad rows. Raises LlpAnnotationError when none of the split files exists.
    """
    files = llp_annotation_files(root)
    present = [split for split in splits if split in files]
    if not present:
        raise LlpAnnotationError(
            f"{root}: none of the weak-label files of {', '.join(splits)} found (AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv)"
        )
    videos: list[WeakLabel] = []
    bad: list[BadRow] = []
    seen: dict[str, str] = {}
    for split in present:
        for record in read_weak_labels(files[split], split, rejections=bad):
            if record.filename in seen:
                bad.append(BadRow(str(files[split]), 0, f"{record.filename}: already listed in split {seen[record.filename]}"))
                continue
            seen[record.filename] = split
            videos.append(record)
    return videos, bad


# ---------------------------------------------------------------- block reader (streaming passes)


def cast_float(array: np.ndarray, dtype: type, out: np.ndarray | None = None) -> np.ndarray:
    """`array.astype(dtype)` between float32 and float16, bit for bit, several times faster.

    OpenCV converts with the CPU's half-precision instructions (numpy's cast is scalar, and slow on
    subnormal halves, common among near-zero ResNet activations); x * 1.0
    keeps every value, -0.0 and inf included, and rounds to nearest even like numpy.
    `out`: a C-contiguous array of `dtype` and of `array`'s size to write into (returned), so
    that repeated casts reuse one buffer.
    """
    import cv2

    target = np.dtype(dtype)
    depths = {np.dtype(np.float16): cv2.CV_16F, np.dtype(np.float32): cv2.CV_32F}
    if out is not None:
        if out.dtype != target or out.size != array.size or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {target} array of {array.size} values")
        if array.size == 0:
            return out
        source = np.ascontiguousarray(array).reshape(-1, array.shape[-1] if array.ndim > 1 else array.size)
        rows = out.reshape(source.shape)
        if array.dtype != target and array.dtype in depths and target in depths:
            written = cv2.multiply(source, 1.0, dst=rows, dtype=depths[target])
            if not np.shares_memory(written, rows):  # OpenCV chose not to write in place
                rows[...] = written
        else:
            rows[...] = source  # numpy's cast, as astype
        return out
    if array.dtype == target:
        return array.copy()
    if array.size == 0 or array.dtype not in depths or target not in depths:
        return array.astype(target)
    rows = np.ascontiguousarray(array).reshape(-1, array.shape[-1] if array.ndim > 1 else array.size)
    return cv2.multiply(rows, 1.0, dtype=depths[target]).reshape(array.shape)


def _standard_header(rows: int, dim: int) -> bytes:
    """The header bytes `np.save` writes for a C-ordered little-endian float32 (rows, dim) array."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(np.zeros((rows, dim), dtype="<f4")))
    return header.getvalue()


class _PartReader:
    """Reads one extractor's files into a reusable buffer (one per thread).

    Fast path: a file whose header is byte for byte the one `np.save` writes for (rows, dim)
    float32 is read straight into the buffer (no header parsing, no fresh allocation per file);
    any other file goes through `read_feature_file`, which accepts every valid .npy (other float
    dtypes, Fortran order, other header versions) and names what is wrong with a bad one.
    """

    def __init__(self, part: FeaturePart):
        self.part = part
        self.header = _standard_header(part.rows, part.dim)
        self.header_buffer = bytearray(len(self.header))
        self.frames_f_d = np.empty((part.rows, part.dim), dtype=np.float32)
        self.frame_bytes = memoryview(self.frames_f_d).cast("B")
        self.buffers = [self.header_buffer, self.frame_bytes]
        self.expected_bytes = len(self.header) + len(self.frame_bytes)
        self.group = part.rows // NUM_SEGMENTS
        self.sums_t_d = np.empty((NUM_SEGMENTS, part.dim), dtype=np.float32)

    def pooled(self, frames_f_d: np.ndarray) -> np.ndarray:
        """The segment sums of `frames_f_d` (the caller divides by `group`: the mean, as pool_to_segments)."""
        if self.group == 1:
            return frames_f_d
        return np.add.reduce(frames_f_d.reshape(NUM_SEGMENTS, self.group, -1), axis=1, out=self.sums_t_d)

    def read(self, root: str, video_id: str) -> np.ndarray:
        """(rows, dim) float32 (the reused buffer or a fresh array); FeatureFileError if unusable.

        One positional read of header and values into the buffers (a Python file object costs
        several more system calls and objects per file: a quarter of the read pass's CPU at LLP
        scale); a short read, an unexpected header or any OSError takes the careful path. The
        L2-sized res152 buffer is then pooled while still in cache. Not memory-mapped: each unmap
        flushes the TLB of every core that runs a thread of this process, which made the other
        threads' work twice as slow.
        """
        path = f"{root}/{self.part.folder}/{video_id}.npy"
        try:
            descriptor = os.open(path, os.O_RDONLY)
            try:
                got = os.preadv(descriptor, self.buffers, 0)
            finally:
                os.close(descriptor)
            if got == self.expected_bytes and self.header_buffer == self.header:
                return self.frames_f_d
        except OSError:
            pass  # missing or unreadable: read_feature_file says which
        return read_feature_file(path, self.part.rows, self.part.dim, check_finite=False)


@dataclass
class FeatureBlock:
    """Pooled features of a block of videos; errors[i] is set for a rejected video (its rows are zeros).

    Per modality: `arrays` (n, 10, dim) float32; `sums` (n, dim) float64 column sums of each
    video's segments; `part_squares` the float64 sum of squares of the whole block per feature
    part (rejected rows add nothing); `half` the block as float16 (for the segment cache) when
    asked for. Non-finite values are found on the per-video sums (NaN and inf survive sums); a
    suspicious video is re-read with the exact element-wise check, which names the file and row.
    """

    video_ids: list[str]
    arrays: dict[str, np.ndarray]
    sums: dict[str, np.ndarray]
    part_squares: dict[str, list[float]]
    errors: list[FeatureFileError | None]
    half: dict[str, np.ndarray] | None = None


class BlockReader:
    """Reads blocks of videos of one layout into FeatureBlocks (thread-safe: one buffer set per thread).

    Gives the same values as `read_segment_embeddings` video by video, with far less work per file.
    """

    def __init__(self, root: Path | str, layout: FeatureLayout, half_dtype: type | None = None):
        import threading

        self.root = Path(root)
        self.layout = layout
        self.half_dtype = half_dtype
        self._local = threading.local()

    def _readers(self) -> dict[str, list[_PartReader]]:
        readers = getattr(self._local, "readers", None)
        if readers is None:
            readers = {m: [_PartReader(part) for part in self.layout.parts(m)] for m in ("audio", "visual")}
            self._local.readers = readers
        return readers

    def read(self, video_ids: list[str]) -> FeatureBlock:
        readers = self._readers()
        root = str(self.root)
        n = len(video_ids)
        modalities = ("audio", "visual")
        arrays = {m: np.empty((n, NUM_SEGMENTS, self.layout.dim(m)), dtype=np.float32) for m in modalities}
        errors: list[FeatureFileError | None] = [None] * n
        for row, video_id in enumerate(video_ids):
            try:
                for modality in modalities:
                    start = 0
                    for reader in readers[modality]:
                        arrays[modality][row, :, start : start + reader.part.dim] = reader.pooled(reader.read(root, video_id))
                        start += reader.part.dim
            except FeatureFileError as error:
                errors[row] = error
                for modality in modalities:
                    arrays[modality][row] = 0.0
        for modality in modalities:  # sums of groups -> means (the same division as pool_to_segments)
            start = 0
            for reader in readers[modality]:
                if reader.group > 1:
                    np.true_divide(arrays[modality][:, :, start : start + reader.part.dim], reader.group, out=arrays[modality][:, :, start : start + reader.part.dim])
                start += reader.part.dim
        # Per-video column sums (float64, as the statistics need them); a non-finite one flags the video.
        sums = {m: arrays[m].sum(axis=1, dtype=np.float64) for m in modalities}
        suspicious = ~(np.isfinite(sums["audio"]).all(axis=1) & np.isfinite(sums["visual"]).all(axis=1))
        for row in np.flatnonzero(suspicious):
            if errors[row] is not None:
                continue
            try:  # the exact check: rejects with file and row, or accepts a mere float32 overflow
                embeddings = read_segment_embeddings(self.root, video_ids[row], self.layout)
            except FeatureFileError as error:
                errors[row] = error
                for modality in modalities:
                    arrays[modality][row] = 0.0
                    sums[modality][row] = 0.0
                continue
            for modality in modalities:
                arrays[modality][row] = embeddings.modality(modality)
        squares: dict[str, list[float]] = {}
        for modality in modalities:
            squares[modality], start = [], 0
            rows_r_d = arrays[modality].reshape(n * NUM_SEGMENTS, -1)
            for part in self.layout.parts(modality):
                piece = rows_r_d[:, start : start + part.dim]
                squares[modality].append(float(np.einsum("rd,rd->", piece, piece, dtype=np.float64)))
                start += part.dim
        half = {m: cast_float(arrays[m], self.half_dtype) for m in modalities} if self.half_dtype is not None else None
        return FeatureBlock(list(video_ids), arrays, sums, squares, errors, half)
