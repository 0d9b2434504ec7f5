"""Across corpora: migrate labels from a labelled segment bank to another corpus's segments.

Each target segment (one modality) takes the k most similar bank segments of the same modality
(cosine on each corpus's own centred, scaled, unit embeddings); class c's score is the
similarity-weighted share of those neighbours that carry c (weights max(similarity, 0)), and c
is labelled where the score reaches the vote threshold. Bank labels can be renamed or merged on
the way with a vocabulary mapping (JSON object: source class -> target class, or null to drop;
unlisted classes keep their name). The bank is streamed in blocks: memory is one block plus the
running top k.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, LLP_CLASSES, MODALITIES, NUM_CLASSES, NUM_SEGMENTS
from mertk.errors import InputError
from mertk.migration.config import VideoUnit, weak_matrix
from mertk.migration.embedding import SegmentCache
from mertk.migration.label import pseudo_label_table, segment_similarity
from mertk.migration.migrate import MigrationModel, label_from_similarity
from mertk.migration.read import ReadPass
from mertk.shards.manifest import ShardResult


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


# ---------------------------------------------------------------- the target corpus, shard by shard


@dataclass(frozen=True)
class TransferContext:
    """What `transfer_shard` needs (picklable: caches are named by folder, read in the worker)."""

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


def transfer_context(bank: ReadPass, model: MigrationModel, target: ReadPass, mapping_c_c: np.ndarray, config: Any) -> TransferContext:
    """The context of a target run: the labelled bank (`bank`, `model`) and the read target corpus."""
    return TransferContext(
        str(bank.cache.directory),
        bank.cache.dims,
        bank.cache.videos,
        model,
        bank_labels(bank, model, mapping_c_c, config.block_videos),
        str(target.cache.directory),
        {m: target.stats[m].frozen() for m in MODALITIES},
        config.neighbours,
        config.vote_threshold,
        config.block_videos,
    )


def transfer_shard(context: TransferContext, units: list[VideoUnit]) -> ShardResult:
    """The shard of target `units`: each segment's k-NN votes among the bank's segments, per modality."""
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


def bank_labels(read: ReadPass, model: MigrationModel, mapping_c_c: np.ndarray, block_videos: int) -> dict[str, np.ndarray]:
    """Hard pseudo-labels of every bank segment, (videos * 10, 25) per modality, vocabulary-mapped."""
    weak_n_c = weak_matrix(read.units)
    labels = {m: np.zeros((read.cache.videos * NUM_SEGMENTS, NUM_CLASSES), dtype=bool) for m in MODALITIES}
    for start in range(0, read.cache.videos, block_videos):
        stop = min(start + block_videos, read.cache.videos)
        similarity = segment_similarity(model, read.cache, start, stop)
        result = label_from_similarity(model, similarity, weak_n_c[start:stop])
        for modality in MODALITIES:
            block = result[modality][1].reshape(-1, NUM_CLASSES)
            labels[modality][start * NUM_SEGMENTS : stop * NUM_SEGMENTS] = map_labels(block, mapping_c_c)
    return labels
