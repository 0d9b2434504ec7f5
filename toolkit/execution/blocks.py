"""Block reading of LLP feature files: many videos per call, reused buffers, a few blocks ahead.

The method reads a video's features with `mertk.corpora.llp_features.read_segment_embeddings`;
this module gives the same values for a block of videos with far less work per file (one
positional read per file into a per-thread buffer, pooling while the buffer is in cache), and
streams blocks from a small thread pool in order. File-format knowledge (paths, shapes, the .npy
header, what makes a file unusable) stays in mertk.corpora.llp_features.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.corpora.llp_features import (
    FeatureFileError,
    FeatureLayout,
    FeaturePart,
    npy_header,
    read_feature_file,
    read_segment_embeddings,
)


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


class ThreadBuffers:
    """One reusable array per (thread, name): repeated passes refill it instead of allocating."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        if name not in buffers:
            buffers[name] = np.empty(shape, dtype=dtype)
        return buffers[name]


class _PartReader:
    """Reads one extractor's files into a reusable buffer (one per thread).

    Fast path: a file whose header is byte for byte the one `np.save` writes for (rows, dim)
    float32 is read straight into the buffer (no header parsing, no fresh allocation per file);
    any other file goes through `read_feature_file`, which accepts every valid .npy (other float
    dtypes, Fortran order, other header versions) and names what is wrong with a bad one.
    """

    def __init__(self, part: FeaturePart):
        self.part = part
        self.header = npy_header(part.rows, part.dim)
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
        several more system calls and objects per file); a short read, an unexpected header or
        any OSError takes the careful path. The L2-sized res152 buffer is then pooled while still
        in cache. Not memory-mapped: each unmap flushes the TLB of every core that runs a thread
        of this process, which slows the other threads' work.
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


def finish_block(
    layout: FeatureLayout,
    video_ids: list[str],
    arrays: dict[str, np.ndarray],
    sums: dict[str, np.ndarray],
    errors: list[FeatureFileError | None],
    half_dtype: type | None,
) -> FeatureBlock:
    """A FeatureBlock from filled (videos, segments, dim) arrays: the per-part sums of squares the
    fit's statistics need, and the half-precision copy when one is asked for."""
    squares: dict[str, list[float]] = {}
    for modality, array in arrays.items():
        squares[modality], start = [], 0
        rows_r_d = array.reshape(len(video_ids) * NUM_SEGMENTS, -1)
        for part in layout.parts(modality):
            piece = rows_r_d[:, start : start + part.dim]
            squares[modality].append(float(np.einsum("rd,rd->", piece, piece, dtype=np.float64)))
            start += part.dim
    half = {m: cast_float(a, half_dtype) for m, a in arrays.items()} if half_dtype is not None else None
    return FeatureBlock(video_ids, arrays, sums, squares, errors, half)


class BlockReader:
    """Reads blocks of videos of one layout into FeatureBlocks (thread-safe: one buffer set per thread).

    Gives the same values as `read_segment_embeddings` video by video.
    """

    def __init__(self, root: Path | str, layout: FeatureLayout, half_dtype: type | None = None):
        self.root = Path(root)
        self.layout = layout
        self.half_dtype = half_dtype
        self._local = threading.local()

    def _readers(self) -> dict[str, list[_PartReader]]:
        readers = getattr(self._local, "readers", None)
        if readers is None:
            readers = {m: [_PartReader(part) for part in self.layout.parts(m)] for m in MODALITIES}
            self._local.readers = readers
        return readers

    def read(self, video_ids: list[str]) -> FeatureBlock:
        readers = self._readers()
        root = str(self.root)
        n = len(video_ids)
        modalities = MODALITIES
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
        return finish_block(self.layout, list(video_ids), arrays, sums, errors, self.half_dtype)


READ_THREADS = 2  # file reading overlaps the caller's work (positional reads release the GIL)


def read_blocks_ahead(reader: BlockReader, id_blocks: Sequence[list[str]], threads: int = READ_THREADS) -> Iterator[FeatureBlock]:
    """The FeatureBlocks of `id_blocks`, in order, read by `threads` threads a few blocks ahead."""
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for number in range(len(id_blocks)):
            while len(pending) < 2 * threads and number + len(pending) < len(id_blocks):
                pending.append(pool.submit(reader.read, id_blocks[number + len(pending)]))
            yield pending.popleft().result()
