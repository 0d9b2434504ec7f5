"""Segment embeddings ready for cosine similarity, and the on-disk cache that streams them.

Features are not centred (ResNet activations are all positive, CLIP/CLAP embeddings share a
large common component), so raw cosine similarity mostly measures that common part. Before
comparing, each extractor's part of a modality is centred by its corpus mean and divided by its
corpus RMS norm (so that res152 and r2plus1d weigh the same in the concatenation), then each
segment is L2-normalised. The statistics need one pass over the corpus: O(dim) memory.

The cache holds every usable video's pooled (10, dim) segments per modality as float16 in one
flat binary file per modality, written in video order and read back in blocks by offset, so
later passes read a fraction of the original bytes and memory stays one block.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.corpora.llp_features import FeatureLayout, SegmentEmbeddings

CACHE_DTYPE = np.float16


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
        rows = rows_t_d.astype(np.float64)
        self.count += rows.shape[0]
        self.sum_d += rows.sum(axis=0)
        self.sum_sq += float(np.einsum("td,td->", rows, rows))

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

    def add(self, rows_t_d: np.ndarray) -> None:
        start = 0
        for part in self.parts:
            part.add(rows_t_d[:, start : start + part.dim])
            start += part.dim

    def frozen(self) -> "Normaliser":
        means = np.concatenate([p.mean_d for p in self.parts]) if self.centre else np.zeros(sum(p.dim for p in self.parts))
        scales = np.concatenate([np.full(p.dim, 1.0 / p.rms) for p in self.parts])
        return Normaliser(means.astype(np.float32), scales.astype(np.float32))


@dataclass(frozen=True)
class Normaliser:
    """x -> (x - mean) * scale, then unit rows: what cosine similarity is taken on."""

    mean_d: np.ndarray
    scale_d: np.ndarray

    def __call__(self, rows_n_d: np.ndarray) -> np.ndarray:
        rows = (rows_n_d.astype(np.float32) - self.mean_d) * self.scale_d
        norms = np.linalg.norm(rows, axis=-1, keepdims=True)
        return rows / np.maximum(norms, 1e-12)

    def linear(self, sum_d: np.ndarray, count: float) -> np.ndarray:
        """The centred, scaled (not normalised) sum of `count` raw rows that add up to `sum_d`."""
        return (sum_d - count * self.mean_d.astype(np.float64)) * self.scale_d.astype(np.float64)


class SegmentCache:
    """Pooled segments of the usable videos, per modality, float16, in video order."""

    def __init__(self, directory: Path | str, dims: dict[str, int]):
        self.directory = Path(directory)
        self.dims = dict(dims)
        self.videos = 0
        self._handles = None

    def path(self, modality: str) -> Path:
        return self.directory / f"{modality}.f16"

    def open_for_writing(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._handles = {m: open(self.path(m), "wb") for m in MODALITIES}
        self.videos = 0

    def append(self, embeddings: SegmentEmbeddings) -> int:
        """Store one video; returns its index in the cache."""
        assert self._handles is not None, "open_for_writing() first"
        for modality in MODALITIES:
            self._handles[modality].write(np.ascontiguousarray(embeddings.modality(modality), dtype=CACHE_DTYPE).tobytes())
        self.videos += 1
        return self.videos - 1

    def close(self) -> None:
        if self._handles:
            for handle in self._handles.values():
                handle.close()
        self._handles = None

    def read(self, modality: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, 10, dim) float32 of the videos [start, stop)."""
        dim = self.dims[modality]
        row_bytes = NUM_SEGMENTS * dim * np.dtype(CACHE_DTYPE).itemsize
        with open(self.path(modality), "rb") as handle:
            handle.seek(start * row_bytes)
            data = handle.read((stop - start) * row_bytes)
        if len(data) != (stop - start) * row_bytes:
            raise RuntimeError(f"{self.path(modality)}: segment cache is shorter than expected; delete it and rerun")
        return np.frombuffer(data, dtype=CACHE_DTYPE).reshape(stop - start, NUM_SEGMENTS, dim).astype(np.float32)

    def blocks(self, block_videos: int = 512) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(first video index, {modality: (n, 10, dim) float32}) for consecutive blocks."""
        for start in range(0, self.videos, block_videos):
            stop = min(start + block_videos, self.videos)
            yield start, {m: self.read(m, start, stop) for m in MODALITIES}

    def remove(self) -> None:
        self.close()
        for modality in MODALITIES:
            if self.path(modality).exists():
                os.unlink(self.path(modality))
        try:
            self.directory.rmdir()
        except OSError:
            pass
