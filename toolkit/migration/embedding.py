"""Segment embeddings ready for cosine similarity, and the on-disk cache that streams them.

Features are not centred (ResNet activations are all positive, CLIP/CLAP embeddings share a
large common component), so raw cosine similarity mostly measures that common part. Before
comparing, each extractor's part of a modality is centred by its corpus mean and divided by its
corpus RMS norm (so that res152 and r2plus1d weigh the same in the concatenation), then each
segment is L2-normalised. The statistics need one pass over the corpus: O(dim) memory.

The cache holds every usable video's pooled (10, dim) segments per modality as float16 in one
flat binary file per modality, written in video order and read back by offset (res152 pooled
80 -> 10 makes it about a sixth of the original bytes), so memory stays one block.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.corpora.llp_features import FeatureLayout, SegmentEmbeddings
from mertk.execution.blocks import cast_float

CACHE_DTYPE = np.float16
GATHER_BYTES = 1 << 20  # bytes of float32 rows per step of read_videos_into: well inside the CPU's L2


@dataclass
class PartStats:
    """Running sums of one feature part: its mean vector and RMS distance to the mean."""

    dim: int
    count: int = 0
    sum_d: np.ndarray = field(default=None)  # type: ignore[assignment]
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        if self.sum_d is None:
            self.sum_d = np.zeros(self.dim, dtype=np.float64)

    def add(self, rows_t_d: np.ndarray) -> None:
        self.add_sums(rows_t_d.sum(axis=0, dtype=np.float64), float(np.einsum("td,td->", rows_t_d, rows_t_d, dtype=np.float64)), rows_t_d.shape[0])

    def add_sums(self, sum_d: np.ndarray, sum_sq: float, count: int) -> None:
        self.count += count
        self.sum_d += sum_d
        self.sum_sq += sum_sq

    @property
    def mean_d(self) -> np.ndarray:
        return self.sum_d / max(self.count, 1)

    @property
    def rms(self) -> float:
        """sqrt(E|x - mean|^2), floored so that a constant part does not divide by zero."""
        if not self.count:
            return 1.0
        variance = self.sum_sq / self.count - float(self.mean_d @ self.mean_d)
        return float(np.sqrt(max(variance, 1e-12)))


@dataclass
class ModalityStats:
    """Centring and scaling of one modality: one PartStats per feature part, in concat order."""

    parts: list[PartStats]
    centre: bool = True

    @classmethod
    def for_layout(cls, layout: FeatureLayout, modality: str, centre: bool = True) -> "ModalityStats":
        return cls([PartStats(part.dim) for part in layout.parts(modality)], centre)

    def add(self, rows_t_d: np.ndarray, sum_d: np.ndarray | None = None) -> None:
        """Add one video's rows; `sum_d` (their float64 column sums) when the caller has it."""
        if sum_d is None:
            sum_d = rows_t_d.sum(axis=0, dtype=np.float64)
        start = 0
        for part in self.parts:
            piece = rows_t_d[:, start : start + part.dim]
            part.add_sums(sum_d[start : start + part.dim], float(np.einsum("td,td->", piece, piece, dtype=np.float64)), rows_t_d.shape[0])
            start += part.dim

    def add_block(self, sums_n_d: np.ndarray, part_squares: list[float], rows: int) -> None:
        """Add a block of videos from their per-video column sums (n, dim), the sum of squares
        of each part over all their rows, and the number of rows (segments)."""
        total_d = sums_n_d.sum(axis=0)
        start = 0
        for part, squares in zip(self.parts, part_squares):
            part.add_sums(total_d[start : start + part.dim], squares, rows)
            start += part.dim

    def frozen(self) -> "Normaliser":
        dims = [p.dim for p in self.parts]
        means = np.concatenate([p.mean_d for p in self.parts]) if self.centre else np.zeros(sum(dims))
        part_scales = np.array([1.0 / p.rms for p in self.parts])
        return Normaliser(means.astype(np.float32), np.repeat(part_scales, dims).astype(np.float32), tuple(dims), part_scales)


@dataclass(frozen=True)
class Normaliser:
    """x -> u = (x - mean) * scale (scale constant within each feature part); cosine is taken on u/|u|."""

    mean_d: np.ndarray
    scale_d: np.ndarray
    part_dims: tuple[int, ...] = ()
    part_scales: np.ndarray | None = None

    def __call__(self, rows_n_d: np.ndarray) -> np.ndarray:
        """Unit rows u/|u| (any leading shape)."""
        rows = (rows_n_d.astype(np.float32) - self.mean_d) * self.scale_d
        norms = np.linalg.norm(rows, axis=-1, keepdims=True)
        return rows / np.maximum(norms, 1e-12)

    def centred_cosine(
        self, rows_n_d: np.ndarray, anchors_c_d: np.ndarray, overwrite: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cosine (n, 25), centred rows x - mean (n, d) float32, 1/|u| (n,)) in three passes.

        The same cosine as `__call__(rows) @ anchors.T`, without materialising u: the scale is
        folded into the anchors and, being constant per part, into the norm. `overwrite=True`
        centres a float32 `rows_n_d` in place (the caller's block is not needed afterwards).
        """
        centred, inverse_norm_n = self.centred(rows_n_d, overwrite)
        return self.cosine(centred, inverse_norm_n, anchors_c_d), centred, inverse_norm_n

    def centred(self, rows_n_d: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(centred rows x - mean (n, d) float32, 1/|u| (n,) float32): what `cosine` needs, whatever the anchors."""
        if overwrite and rows_n_d.dtype == np.float32 and rows_n_d.flags.writeable:
            centred = rows_n_d
        else:
            centred = rows_n_d.astype(np.float32, copy=True)
        centred -= self.mean_d
        return centred, self.inverse_norms(centred)

    def inverse_norms(self, centred_n_d: np.ndarray) -> np.ndarray:
        """1/|u| (n,) float32 of centred rows x - mean (u = scaled centred row)."""
        squared_n = np.zeros(centred_n_d.shape[0], dtype=np.float64)
        dims = self.part_dims or (centred_n_d.shape[1],)
        scales = self.part_scales if self.part_scales is not None else np.array([float(self.scale_d[0])])
        start = 0
        for dim, scale in zip(dims, scales):
            piece = centred_n_d[:, start : start + dim]
            squared_n += scale * scale * np.einsum("nd,nd->n", piece, piece).astype(np.float64)
            start += dim
        return (1.0 / np.maximum(np.sqrt(squared_n), 1e-12)).astype(np.float32)

    def cosine(self, centred_n_d: np.ndarray, inverse_norm_n: np.ndarray, anchors_c_d: np.ndarray) -> np.ndarray:
        """(n, 25) cosine of centred rows (with their 1/|u|) to unit anchors."""
        dot_n_c = centred_n_d @ (anchors_c_d * self.scale_d).T
        return dot_n_c * inverse_norm_n[:, None]

    def linear(self, sum_d: np.ndarray, count: float) -> np.ndarray:
        """The centred, scaled (not normalised) sum of `count` raw rows that add up to `sum_d`."""
        return (sum_d - count * self.mean_d.astype(np.float64)) * self.scale_d.astype(np.float64)


class SegmentCache:
    """Per-video (10, dim) arrays per modality in video order: one flat binary file each.

    Holds the pooled segment features (float16) or, with other dims and dtype, the final
    similarities (float32, dim 25) that the labelling shards read back.
    """

    def __init__(self, directory: Path | str, dims: dict[str, int], dtype: type = CACHE_DTYPE):
        self.directory = Path(directory)
        self.dims = dict(dims)
        self.dtype = np.dtype(dtype)
        self.videos = 0
        self._handles = None

    def path(self, modality: str) -> Path:
        return self.directory / f"{modality}.{self.dtype.name}"

    def open_for_writing(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._handles = {m: open(self.path(m), "wb") for m in MODALITIES}
        self.videos = 0

    def append(self, embeddings: SegmentEmbeddings) -> int:
        """Store one video; returns its index in the cache."""
        return self.append_block({m: embeddings.modality(m)[None] for m in MODALITIES})

    def append_block(self, arrays: dict[str, np.ndarray]) -> int:
        """Store (n, 10, dim) arrays of n videos per modality; returns the first one's index."""
        assert self._handles is not None, "open_for_writing() first"
        for modality in MODALITIES:
            # A view of the array's memory: no bytes copy (a copy would hold the GIL).
            self._handles[modality].write(memoryview(np.ascontiguousarray(arrays[modality], dtype=self.dtype)).cast("B"))
        count = next(iter(arrays.values())).shape[0]
        self.videos += count
        return self.videos - count

    def close(self) -> None:
        if self._handles:
            for handle in self._handles.values():
                handle.close()
        self._handles = None

    def read_stored(self, modality: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, 10, dim) of the videos [start, stop) in the stored dtype."""
        dim = self.dims[modality]
        values = (stop - start) * NUM_SEGMENTS * dim
        with open(self.path(modality), "rb") as handle:
            handle.seek(start * NUM_SEGMENTS * dim * self.dtype.itemsize)
            data = np.fromfile(handle, dtype=self.dtype, count=values)
        if data.size != values:
            raise RuntimeError(f"{self.path(modality)}: segment cache is shorter than expected; delete it and rerun")
        return data.reshape(stop - start, NUM_SEGMENTS, dim)

    def read(self, modality: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, 10, dim) float32 of the videos [start, stop), a fresh writeable array."""
        data = self.read_stored(modality, start, stop)
        return cast_float(data, np.float32) if data.dtype != np.float32 else data

    def read_videos_into(self, modality: str, indices: np.ndarray, out: np.ndarray, minus_d: np.ndarray | None = None) -> np.ndarray:
        """`out` ((len(indices) * 10, dim) float32) filled with the given videos' rows, minus
        `minus_d` if given; a few videos at a time, so that gather, cast and subtraction happen
        in the CPU cache and no fresh memory is needed."""
        dim = self.dims[modality]
        if len(indices) == 0:
            return out
        mapped = np.memmap(self.path(modality), dtype=self.dtype, mode="r")
        count = mapped.size // (NUM_SEGMENTS * dim)
        if int(np.max(indices)) >= count:
            raise RuntimeError(f"{self.path(modality)}: segment cache is shorter than expected; delete it and rerun")
        videos = mapped[: count * NUM_SEGMENTS * dim].reshape(count, NUM_SEGMENTS * dim)
        step = max(1, GATHER_BYTES // (NUM_SEGMENTS * dim * 4))
        stored = np.empty((min(step, len(indices)), NUM_SEGMENTS * dim), dtype=self.dtype)
        indices = np.asarray(indices)
        for first in range(0, len(indices), step):
            chosen = indices[first : first + step]
            # mode="clip": indices are checked above, and "raise" would gather into a temporary first.
            np.take(videos, chosen, axis=0, out=stored[: len(chosen)], mode="clip")
            rows = out[first * NUM_SEGMENTS : (first + len(chosen)) * NUM_SEGMENTS]
            cast_float(stored[: len(chosen)].reshape(-1, dim), np.float32, out=rows)
            if minus_d is not None:
                rows -= minus_d
        del videos, mapped
        return out

    def blocks(self, block_videos: int = 512) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(first video index, {modality: (n, 10, dim) float32}) for consecutive blocks."""
        for start in range(0, self.videos, block_videos):
            stop = min(start + block_videos, self.videos)
            yield start, {m: self.read(m, start, stop) for m in MODALITIES}

    def remove(self) -> None:
        """Delete the cache folder and everything in it (the similarity cache lives inside)."""
        import shutil

        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
