"""Across corpora: migrate labels from a labelled segment bank to another corpus's segments.

Each target segment (one modality) takes the k most similar bank segments of the same modality
(cosine on each corpus's own centred, scaled, unit embeddings); class c's score is the
similarity-weighted share of those neighbours that carry c (weights max(similarity, 0)), and c
is labelled where the score reaches the vote threshold. Bank labels can be renamed or merged on
the way with a vocabulary mapping (JSON object: source class -> target class, or null to drop;
unlisted classes keep their name). The neighbours come from mertk.migration.neighbours (faiss);
`TopK` is the plain numpy k-NN the tests compare faiss' exact search with; the streamed target
stages are in mertk.migration.target_corpus.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, LLP_CLASSES, NUM_CLASSES
from mertk.errors import InputError


class VocabularyError(InputError):
    """A vocabulary mapping file that cannot be used; the message names it."""


def read_vocabulary(path: Path | str | None) -> np.ndarray:
    """(25 source, 25 target) bool mapping matrix; identity without a file."""
    mapping_c_c = np.eye(NUM_CLASSES, dtype=bool)
    if path is None:
        return mapping_c_c
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VocabularyError(f"{path}: not a readable JSON object ({error})") from None
    if not isinstance(data, dict):
        raise VocabularyError(f"{path}: expected a JSON object mapping source class -> target class")
    for source, target in data.items():
        if source not in LLP_CLASS_INDEX:
            raise VocabularyError(f"{path}: source class {source!r} is not an LLP class")
        if target is not None and target not in LLP_CLASS_INDEX:
            raise VocabularyError(
                f"{path}: target class {target!r} (for {source!r}) is not one of the 25 output classes ({', '.join(LLP_CLASSES[:3])}, ...)"
            )
        row = LLP_CLASS_INDEX[source]
        mapping_c_c[row] = False
        if target is not None:
            mapping_c_c[row, LLP_CLASS_INDEX[target]] = True
    return mapping_c_c


def map_labels(labels_n_c: np.ndarray, mapping_c_c: np.ndarray) -> np.ndarray:
    return (labels_n_c.astype(np.int32) @ mapping_c_c.astype(np.int32)) > 0


class TopK:
    """Running k largest similarities (and their bank rows) for a set of queries."""

    def __init__(self, queries: int, k: int):
        self.k = k
        self.similarity_q_k = np.full((queries, 0), -np.inf, dtype=np.float32)
        self.index_q_k = np.zeros((queries, 0), dtype=np.int64)

    def add(self, similarity_q_b: np.ndarray, first_index: int) -> None:
        indices = np.broadcast_to(np.arange(first_index, first_index + similarity_q_b.shape[1]), similarity_q_b.shape)
        values = np.concatenate([self.similarity_q_k, similarity_q_b], axis=1)
        rows = np.concatenate([self.index_q_k, indices], axis=1)
        if values.shape[1] > self.k:
            # Stable order on ties (lower bank index first) keeps the result deterministic.
            order = np.lexsort((rows, -values), axis=1)[:, : self.k]
            values = np.take_along_axis(values, order, axis=1)
            rows = np.take_along_axis(rows, order, axis=1)
        self.similarity_q_k, self.index_q_k = values, rows


def knn_votes(similarity_q_k: np.ndarray, neighbour_labels_q_k_c: np.ndarray) -> np.ndarray:
    """(queries, 25) float32 in [0, 1]: similarity-weighted share of neighbours carrying each class."""
    weights_q_k = np.maximum(similarity_q_k, 0.0).astype(np.float64)
    total_q = weights_q_k.sum(axis=1, keepdims=True)
    votes = np.einsum("qk,qkc->qc", weights_q_k, neighbour_labels_q_k_c.astype(np.float64))
    return np.divide(votes, total_q, out=np.zeros_like(votes), where=total_q > 0).clip(0, 1).astype(np.float32)
