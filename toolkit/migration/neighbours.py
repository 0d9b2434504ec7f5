"""The k nearest bank segments of each target segment, with faiss: exact, or an HNSW graph past a size.

Label migration to another corpus (mertk.migration.transfer) needs, for every target segment of
one modality, the k bank segments of highest cosine similarity (both sides are unit rows, so
cosine = inner product). Its cost is bank rows x target rows x dim multiply-adds:

- up to `EXACT_MAX_PAIRS` (bank segments x target segments, per modality) the search is exact
  (`IndexFlatIP`): LLP labelling LLP-sized corpora (about 120k x 120k segments) stays exact;
- past it (a VGGSound or AudioSet target: 2M-20M segments) a graph index (`IndexHNSWFlat`,
  inner product, `HNSW_LINKS` links a node, built in one thread so that the graph, and so the
  bytes, are the same on every run) is searched with `efSearch` candidates: the smallest of
  `EF_SEARCH_STEPS` whose recall@10 against exact search reaches `RECALL_GOAL` on a sample of
  the run's target segments. That recall, and the share of migrated labels the approximation
  changes on the sample, go into the manifest. (An inverted-file index, IndexIVFFlat, needed a
  sixth of the bank scanned for the same recall on LLP-like features and was slower than exact
  search's matrix products; HNSW at recall 0.95-0.98 was 1.2-2.7x faster than exact over our benchmark runs, which the shared machine's load moves.)

The label rule does not depend on the index: a class's score is the similarity-weighted share of
the k neighbours carrying it (`transfer.knn_votes`). An index is built in memory (faiss' own
serialisation, one byte array). For other processes (Ray workers, a process pool) it is written
once to a file (`NeighbourIndex.to_file`) and only the file's path, size and sha256 travel: each
process memory-maps the file read-only (faiss' IO_FLAG_MMAP_IFC), so the index's pages are the
page cache's, held once per node however many workers search it, and no process keeps a private
copy. Where faiss sees a GPU (the faiss GPU build), exact searches run there.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mertk.errors import RunError
from mertk.migration.transfer import knn_votes

INDEX_KINDS = ("auto", "exact", "hnsw")
EXACT_MAX_PAIRS = 5e10  # bank x target segments per modality searched exactly under --neighbour-index auto
RECALL_K = 10  # recall@k is measured at this k (and at the run's k when it differs)
RECALL_GOAL = 0.975  # efSearch is raised until the sample's recall@10 reaches this
RECALL_SAMPLE_QUERIES = 2000  # target segments per modality on which recall is measured
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)
HNSW_LINKS = 32  # faiss' M: links per node
HNSW_EF_CONSTRUCTION = 40  # candidates while building (faiss' default)
INDEX_SUFFIX = ".faiss"
MAPPED_KEPT = 2  # file-backed indexes a process keeps mapped: a run has one per modality


class NeighbourIndexError(ValueError):
    """An index choice that cannot be used (unknown kind, empty bank)."""


def _faiss():
    import faiss

    return faiss


def choose_index_kind(requested: str, bank_rows: int, target_rows: int) -> str:
    """`exact` or `hnsw` for `--neighbour-index requested` (auto: by bank x target size)."""
    if requested not in INDEX_KINDS:
        raise NeighbourIndexError(f"--neighbour-index must be one of {', '.join(INDEX_KINDS)}, not {requested!r}")
    if requested != "auto":
        return requested
    return "exact" if float(bank_rows) * float(target_rows) <= EXACT_MAX_PAIRS else "hnsw"


@dataclass
class NeighbourIndex:
    """A bank of unit rows, searchable for the k largest inner products.

    In memory, `serialized` holds faiss' bytes (uint8); file-backed (`to_file`), `path` names a
    file holding them, of `size` bytes and hash `sha256`, and `serialized` is None. Either way the
    faiss object is made on first use in each process and never pickled: a file-backed index
    pickles as its path alone, and is memory-mapped where it is searched.
    """

    kind: str  # exact | hnsw
    rows: int
    dim: int
    serialized: np.ndarray | None
    ef_search: int | None = None
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    _index: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_index"] = None
        return state

    def parameters(self) -> dict[str, Any]:
        """What the manifest records about the index."""
        if self.kind == "exact":
            return {"type": "IndexFlatIP", "bank_rows": self.rows}
        return {
            "type": "IndexHNSWFlat", "metric": "inner_product", "M": HNSW_LINKS, "efConstruction": HNSW_EF_CONSTRUCTION,
            "efSearch": self.ef_search, "bank_rows": self.rows,
        }

    def index(self) -> Any:
        if self._index is None:
            if self.path is not None:
                self._index = _mapped_index(self)
            else:
                index = _faiss().deserialize_index(self.serialized)
                self._index = _configured(index, self.kind, self.ef_search)
        return self._index

    def with_ef_search(self, ef_search: int) -> "NeighbourIndex":
        return NeighbourIndex(self.kind, self.rows, self.dim, self.serialized, ef_search, self.path, self.size, self.sha256)

    def to_file(self, path: Path | str) -> "NeighbourIndex":
        """Write this in-memory index's bytes to `path` (atomically, durably) and return the
        file-backed index that reads them (its pickle carries the path, size and sha256 only).

        The bytes of a given bank are the same on every run, so a resumed run rewrites the same file.
        """
        if self.serialized is None:
            raise NeighbourIndexError(f"{self.path}: the index is already file-backed")
        from mertk.shards.io import write_bytes_atomic  # here: the CLI imports this module for its choices, not pyarrow

        data = memoryview(np.ascontiguousarray(self.serialized))
        write_bytes_atomic(path, data, durable=True)
        return NeighbourIndex(
            self.kind, self.rows, self.dim, None, self.ef_search, str(path), data.nbytes, hashlib.sha256(data).hexdigest()
        )

    def search(self, queries_q_d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarity_q_k float32, bank row_q_k int64), best first; rows -1 where fewer than k were found."""
        queries = np.ascontiguousarray(queries_q_d, dtype=np.float32)
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        similarity_q_k, row_q_k = self.index().search(queries, min(k, self.rows))
        if similarity_q_k.shape[1] < k:  # a bank smaller than k: the missing neighbours count as absent
            pad = k - similarity_q_k.shape[1]
            similarity_q_k = np.pad(similarity_q_k, ((0, 0), (0, pad)), constant_values=-np.inf)
            row_q_k = np.pad(row_q_k, ((0, 0), (0, pad)), constant_values=-1)
        return similarity_q_k.astype(np.float32, copy=False), row_q_k.astype(np.int64, copy=False)


def _configured(index: Any, kind: str, ef_search: int | None) -> Any:
    """A read faiss index made ready to search: efSearch for HNSW, the GPU for exact where there is one."""
    if kind == "hnsw":
        index.hnsw.efSearch = ef_search
        return index  # faiss has no GPU HNSW
    return _on_gpu(index)


# File-backed indexes this process has mapped (most recent last): a process pool's task unpickles
# its own NeighbourIndex each time, and the file is checked and mapped once per process, not per task.
_mapped: OrderedDict[tuple, Any] = OrderedDict()


def _mapped_index(index: NeighbourIndex) -> Any:
    """The faiss index of a file-backed NeighbourIndex, memory-mapped read-only after checking the
    file's size and sha256 (a missing or damaged file is a one-line RunError naming it)."""
    key = (index.path, index.size, index.sha256, index.kind, index.ef_search)
    if key in _mapped:
        _mapped.move_to_end(key)
        return _mapped[key]
    from mertk.shards.io import file_sha256

    path = Path(index.path)
    try:
        size = path.stat().st_size
        digest = file_sha256(path) if size == index.size else None
    except OSError as error:
        raise RunError(
            f"{path}: neighbour index file unreadable ({error.strerror or error}); the output folder must be on a path "
            f"every worker sees; run the same command again to rewrite it"
        ) from None
    if size != index.size or digest != index.sha256:
        raise RunError(
            f"{path}: damaged neighbour index file ({size} bytes, expected {index.size} with the sha256 the run wrote); "
            f"run the same command again to rewrite it"
        )
    faiss = _faiss()
    try:
        mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as error:
        raise RunError(f"{path}: faiss cannot read the neighbour index file ({str(error).splitlines()[-1]})") from None
    _mapped[key] = _configured(mapped, index.kind, index.ef_search)
    while len(_mapped) > MAPPED_KEPT:
        _mapped.popitem(last=False)
    return _mapped[key]


def _on_gpu(index: Any) -> Any:
    """The index on the first GPU where the faiss build has GPU support and sees one; else as is."""
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return index
    resources = faiss.StandardGpuResources()
    gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu_index.referenced_resources = resources  # keep the resources alive as long as the index
    return gpu_index


def build_index(bank_b_d: np.ndarray, kind: str) -> NeighbourIndex:
    """A NeighbourIndex over the unit rows `bank_b_d` (float32); `kind` exact or hnsw."""
    faiss = _faiss()
    bank = np.ascontiguousarray(bank_b_d, dtype=np.float32)
    rows, dim = bank.shape
    if rows == 0:
        raise NeighbourIndexError("the neighbour bank is empty: no labelled segment to migrate from")
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
        index.add(bank)
        return NeighbourIndex("exact", rows, dim, faiss.serialize_index(index))
    if kind != "hnsw":
        raise NeighbourIndexError(f"unknown neighbour index kind {kind!r}")
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # parallel insertion would make the graph depend on thread timing
    try:
        index.add(bank)
    finally:
        faiss.omp_set_num_threads(threads)
    return NeighbourIndex("hnsw", rows, dim, faiss.serialize_index(index), EF_SEARCH_STEPS[0])


def neighbour_votes(index: NeighbourIndex, queries_q_d: np.ndarray, bank_labels_b_c: np.ndarray, k: int) -> np.ndarray:
    """(queries, classes) float32 votes: the similarity-weighted share of the k neighbours carrying each class."""
    similarity_q_k, row_q_k = index.search(queries_q_d, k)
    return votes_from_neighbours(similarity_q_k, row_q_k, bank_labels_b_c)


def votes_from_neighbours(similarity_q_k: np.ndarray, row_q_k: np.ndarray, bank_labels_b_c: np.ndarray) -> np.ndarray:
    found = row_q_k >= 0
    labels_q_k_c = np.asarray(bank_labels_b_c)[np.where(found, row_q_k, 0)] & found[..., None]
    return knn_votes(np.where(found, similarity_q_k, 0.0), labels_q_k_c)


@dataclass(frozen=True)
class RecallMeasure:
    """How the approximate index compares with exact search on a sample of target segments."""

    queries: int
    recall_at_10: float
    recall_at_k: float
    labels_exact: int  # (segment, class) labels migrated with exact neighbours on the sample
    labels_changed: int  # ... whose hard label the approximate index changes (either way)
    depth_recalls: dict[int, float]  # recall@10 of each efSearch tried

    def to_dict(self, k: int) -> dict[str, Any]:
        data = {
            "sample_queries": self.queries,
            "recall_at_10": round(self.recall_at_10, 4),
            "labels_exact": self.labels_exact,
            "labels_changed": self.labels_changed,
            "labels_changed_share": round(self.labels_changed / max(self.labels_exact, 1), 5),
            "efSearch_recall_at_10": {str(p): round(r, 4) for p, r in self.depth_recalls.items()},
        }
        if k != RECALL_K:
            data[f"recall_at_{k}"] = round(self.recall_at_k, 4)
        return data


def recall(found_q_k: np.ndarray, truth_q_k: np.ndarray) -> float:
    """Mean share of the true k neighbours (rows of `truth_q_k`) that were found."""
    if found_q_k.shape[0] == 0:
        return 1.0
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found_q_k, truth_q_k))
    return hits / max(int((truth_q_k >= 0).sum()), 1)


def tune_and_measure(
    index: NeighbourIndex,
    bank_b_d: np.ndarray,
    sample_q_d: np.ndarray,
    bank_labels_b_c: np.ndarray,
    k: int,
    vote_threshold: float,
) -> tuple[NeighbourIndex, RecallMeasure | None]:
    """For an HNSW index: the smallest efSearch of EF_SEARCH_STEPS reaching RECALL_GOAL on the
    sample (the largest if none does), and its measure against exact search.

    Exact indexes come back unchanged, without a measure (their recall is 1 by construction).
    """
    if index.kind == "exact":
        return index, None
    exact = build_index(bank_b_d, "exact")
    depth = max(k, RECALL_K)
    truth_similarity, truth_rows = exact.search(sample_q_d, depth)
    recalls: dict[int, float] = {}
    chosen = index
    for ef_search in EF_SEARCH_STEPS:
        chosen = index.with_ef_search(max(ef_search, depth))
        _, rows = chosen.search(sample_q_d, depth)
        recalls[chosen.ef_search] = recall(rows[:, :RECALL_K], truth_rows[:, :RECALL_K])
        if recalls[chosen.ef_search] >= RECALL_GOAL:
            break
    similarity, rows = chosen.search(sample_q_d, k)
    approximate = votes_from_neighbours(similarity, rows, bank_labels_b_c) >= vote_threshold
    exact_labels = votes_from_neighbours(truth_similarity[:, :k], truth_rows[:, :k], bank_labels_b_c) >= vote_threshold
    measure = RecallMeasure(
        queries=int(sample_q_d.shape[0]),
        recall_at_10=recalls[chosen.ef_search],
        recall_at_k=recall(rows, truth_rows[:, :k]),
        labels_exact=int(exact_labels.sum()),
        labels_changed=int((approximate != exact_labels).sum()),
        depth_recalls=recalls,
    )
    return chosen, measure
