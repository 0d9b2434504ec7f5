"""faiss neighbours for cross-corpus migration: exact equals the numpy k-NN, HNSW is tuned and measured."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mertk.errors import RunError
from mertk.migration.neighbours import (
    EXACT_MAX_PAIRS,
    NeighbourIndexError,
    RECALL_GOAL,
    build_index,
    choose_index_kind,
    neighbour_votes,
    recall,
    tune_and_measure,
)
from mertk.migration.transfer import TopK, knn_votes


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    matrix = rng.standard_normal((rows, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _clustered(rng: np.random.Generator, rows: int, dim: int, centres: int) -> np.ndarray:
    """Unit rows around a few centres: the structure real segment embeddings have."""
    centre_c_d = _unit_rows(rng, centres, dim)
    rows_r_d = centre_c_d[rng.integers(centres, size=rows)] + 0.6 * _unit_rows(rng, rows, dim)
    return (rows_r_d / np.linalg.norm(rows_r_d, axis=1, keepdims=True)).astype(np.float32)


def _numpy_votes(queries_q_d, bank_b_d, labels_b_c, k, block_rows=700):
    """The k-NN of mertk.migration.transfer as run before faiss: blocks of the bank, running top k."""
    top = TopK(queries_q_d.shape[0], k)
    for start in range(0, bank_b_d.shape[0], block_rows):
        top.add(queries_q_d @ bank_b_d[start : start + block_rows].T, start)
    return knn_votes(top.similarity_q_k, labels_b_c[top.index_q_k]), top.index_q_k


def test_exact_faiss_gives_the_numpy_knn_votes():
    rng = np.random.default_rng(3)
    bank = _unit_rows(rng, 3000, 96)
    queries = _unit_rows(rng, 400, 96)
    labels = rng.random((3000, 25)) < 0.15
    expected_votes, expected_rows = _numpy_votes(queries, bank, labels, k=10)
    index = build_index(bank, "exact")
    votes = neighbour_votes(index, queries, labels, k=10)
    _, rows = index.search(queries, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(votes, expected_votes, atol=1e-6)
    assert ((votes >= 0.5) == (expected_votes >= 0.5)).all()
    assert votes.max() > 0.5 > votes.min()  # the comparison covers labels on both sides of the threshold


def test_a_bank_smaller_than_k_votes_with_what_it_has():
    rng = np.random.default_rng(4)
    bank = _unit_rows(rng, 3, 16)
    labels = np.array([[True, False], [True, False], [False, True]])
    votes = neighbour_votes(build_index(bank, "exact"), bank, labels, k=10)
    expected, _ = _numpy_votes(bank, bank, labels, k=3)
    np.testing.assert_allclose(votes, expected, atol=1e-6)


def test_the_index_pickles_as_bytes_and_searches_the_same_after():
    rng = np.random.default_rng(5)
    bank = _clustered(rng, 4000, 32, 20)
    index = build_index(bank, "hnsw")
    before = index.search(bank[:50], 10)
    copy = pickle.loads(pickle.dumps(index))
    assert copy._index is None  # the faiss object is rebuilt from the bytes, not pickled
    after = copy.search(bank[:50], 10)
    np.testing.assert_array_equal(before[1], after[1])


def _mapped_files() -> set[str]:
    """Files this process has memory-mapped (Linux: /proc/self/maps)."""
    return {line.split(maxsplit=5)[5].strip() for line in Path("/proc/self/maps").read_text().splitlines() if len(line.split(maxsplit=5)) == 6}


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_file_backed_index_pickles_as_its_path_and_is_searched_memory_mapped(tmp_path, kind):
    rng = np.random.default_rng(9)
    bank = _clustered(rng, 5000, 64, 30)
    queries = _clustered(np.random.default_rng(10), 300, 64, 30)
    in_memory = build_index(bank, kind).with_ef_search(48)
    on_file = in_memory.to_file(tmp_path / "state" / f"{kind}.faiss")
    assert (tmp_path / "state" / f"{kind}.faiss").read_bytes() == in_memory.serialized.tobytes()
    assert not list((tmp_path / "state").glob(".*"))  # no temporary file left beside it
    assert on_file.serialized is None and on_file.size == in_memory.serialized.nbytes > 1_000_000
    assert on_file.parameters() == in_memory.parameters() and on_file.ef_search == 48
    pickled = pickle.dumps(on_file)
    assert len(pickled) < 1000  # the path, size and hash: no index bytes
    copy = pickle.loads(pickled)
    assert copy._index is None and str(tmp_path / "state" / f"{kind}.faiss") not in _mapped_files()
    expected = in_memory.search(queries, 10)
    found = copy.search(queries, 10)
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_array_equal(found[0], expected[0])
    assert str(tmp_path / "state" / f"{kind}.faiss") in _mapped_files()  # searched where it lies, not read into memory
    labels = rng.random((5000, 25)) < 0.2
    np.testing.assert_array_equal(neighbour_votes(copy, queries, labels, 10), neighbour_votes(in_memory, queries, labels, 10))


def test_a_damaged_or_missing_index_file_is_one_line_naming_it(tmp_path):
    rng = np.random.default_rng(11)
    bank = _unit_rows(rng, 2000, 32)
    index = build_index(bank, "hnsw")
    flipped = index.to_file(tmp_path / "flipped.faiss")
    data = bytearray((tmp_path / "flipped.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed: only the hash sees it
    (tmp_path / "flipped.faiss").write_bytes(bytes(data))
    truncated = index.to_file(tmp_path / "truncated.faiss")
    (tmp_path / "truncated.faiss").write_bytes(bytes(data[:1000]))
    missing = index.to_file(tmp_path / "missing.faiss")
    (tmp_path / "missing.faiss").unlink()
    for damaged, said in ((flipped, "damaged"), (truncated, "damaged"), (missing, "unreadable")):
        with pytest.raises(RunError) as raised:
            pickle.loads(pickle.dumps(damaged)).search(bank[:5], 10)
        message = str(raised.value)
        assert message.startswith(f"{damaged.path}: ") and said in message and "\n" not in message
        assert "run the same command again" in message
    with pytest.raises(NeighbourIndexError, match="already file-backed"):
        missing.to_file(tmp_path / "again.faiss")


def test_hnsw_is_tuned_to_the_recall_goal_and_measured_against_exact():
    rng = np.random.default_rng(6)
    bank = _clustered(rng, 8000, 48, 40)
    queries = _clustered(np.random.default_rng(7), 600, 48, 40)
    labels = rng.random((8000, 25)) < 0.2
    index = build_index(bank, "hnsw")
    assert index.serialized.tobytes() == build_index(bank, "hnsw").serialized.tobytes()  # same graph every run
    tuned, measure = tune_and_measure(index, bank, queries, labels, k=10, vote_threshold=0.3)
    assert measure is not None and measure.queries == 600
    assert measure.recall_at_10 >= RECALL_GOAL
    assert tuned.ef_search == max(measure.depth_recalls)  # the last efSearch tried is the first to reach the goal
    assert all(r < RECALL_GOAL for p, r in measure.depth_recalls.items() if p < tuned.ef_search)
    # recompute the recall independently
    _, truth = build_index(bank, "exact").search(queries, 10)
    _, found = tuned.search(queries, 10)
    assert measure.recall_at_10 == pytest.approx(recall(found, truth))
    assert measure.labels_exact > 0 and measure.labels_changed <= measure.labels_exact
    manifest = measure.to_dict(10)
    assert manifest["labels_changed_share"] == pytest.approx(measure.labels_changed / measure.labels_exact, abs=1e-5)
    assert tuned.parameters()["efSearch"] == tuned.ef_search and tuned.parameters()["type"] == "IndexHNSWFlat"


def test_exact_index_has_no_measure():
    rng = np.random.default_rng(8)
    bank = _unit_rows(rng, 100, 8)
    index = build_index(bank, "exact")
    assert tune_and_measure(index, bank, bank[:5], np.zeros((100, 25), bool), 10, 0.5) == (index, None)


def test_index_choice():
    assert choose_index_kind("auto", 120_000, 120_000) == "exact"  # LLP labelling an LLP-sized corpus
    assert choose_index_kind("auto", 120_000, 2_000_000) == "hnsw"  # a VGGSound-sized target
    assert EXACT_MAX_PAIRS >= 120_000 * 120_000
    assert choose_index_kind("exact", 10**9, 10**9) == "exact"
    with pytest.raises(NeighbourIndexError, match="--neighbour-index"):
        choose_index_kind("ivf", 1, 1)
    with pytest.raises(NeighbourIndexError, match="empty"):
        build_index(np.zeros((0, 4), np.float32), "exact")
