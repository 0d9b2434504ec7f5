"""Label-migration building blocks: thresholds, anchors (prototypes, text file, CLIP), k-NN votes, vocabulary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, LLP_CLASSES
from mertk.migration.anchors import (
    SIMILARITY_BINS,
    AnchorError,
    PrototypeSeeds,
    SimilarityBins,
    _load_module_from_clip_package,
    bin_index,
    clip_text_anchors,
    load_text_anchors,
)
from mertk.migration.embedding import ModalityStats, PartStats
from mertk.migration.migrate import migrate_scores
from mertk.migration.thresholds import calibrated_threshold, midpoint_threshold, otsu_threshold
from mertk.migration.transfer import TopK, VocabularyError, knn_votes, map_labels, read_vocabulary


def histogram(values) -> np.ndarray:
    return np.bincount(bin_index(np.asarray(values), SIMILARITY_BINS), minlength=SIMILARITY_BINS)


def test_otsu_splits_two_modes_and_handles_degenerate_histograms():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.1, 0.03, 500), rng.normal(0.6, 0.03, 300)]
    assert 0.2 < otsu_threshold(histogram(values)) < 0.5
    assert otsu_threshold(np.zeros(SIMILARITY_BINS, dtype=int)) == float("inf")
    assert otsu_threshold(histogram([0.3] * 50)) <= 0.3  # one value: everything migrates


def test_midpoint_lies_between_null_and_present_levels_even_for_full_coverage():
    rng = np.random.default_rng(1)
    null = rng.normal(0.0, 0.05, 2000)
    carrying = rng.normal(0.5, 0.05, 400)  # the class fills its videos: no low mode at all
    threshold = midpoint_threshold(histogram(carrying), histogram(null))
    assert 0.2 < threshold < 0.4 and (carrying >= threshold).mean() > 0.99
    assert otsu_threshold(histogram(carrying)) > 0.4  # Otsu would cut the single mode


def test_calibrated_threshold_maximises_f1():
    positives = histogram([0.5, 0.55, 0.6, 0.62])
    negatives = histogram([0.1, 0.2, 0.45, 0.3])
    threshold = calibrated_threshold(positives, negatives)
    assert 0.45 < threshold <= 0.5
    assert calibrated_threshold(histogram([]), negatives) is None


def test_scores_are_zero_outside_the_weak_label_and_half_at_threshold():
    similarity = np.full((1, 10, 25), 0.3)
    weak = np.zeros((1, 25), dtype=bool)
    weak[0, 3] = True
    thresholds = np.full(25, 0.3)
    thresholds[4] = np.inf
    scores = migrate_scores(similarity, weak, thresholds, 0.05)
    assert scores.dtype == np.float32 and scores.shape == (1, 10, 25)
    assert np.allclose(scores[0, :, 3], 0.5) and scores[0, :, np.arange(25) != 3].max() == 0


def test_part_statistics_centre_and_scale_each_part():
    stats = ModalityStats([PartStats(2), PartStats(1)])
    stats.add(np.array([[1.0, 1.0, 10.0], [3.0, 3.0, 30.0]]))
    normaliser = stats.frozen()
    assert np.allclose(normaliser.mean_d, [2, 2, 20])
    assert np.allclose(normaliser.scale_d, [1 / np.sqrt(2), 1 / np.sqrt(2), 0.1])
    rows = np.array([[3.0, 3.0, 30.0], [0.0, 2.5, 17.0]], dtype=np.float32)
    unit = normaliser(rows)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0)
    anchors = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]], dtype=np.float32)
    cosine, centred, inverse_norm = normaliser.centred_cosine(rows, anchors)
    assert np.allclose(cosine, unit @ anchors.T, atol=1e-6)  # the fast path gives the same cosine
    assert np.allclose(centred, rows - normaliser.mean_d)


def test_prototypes_come_from_single_label_videos_first():
    seeds = PrototypeSeeds(3)
    seeds.add((0,), np.tile([1.0, 0.0, 0.0], (10, 1)))
    seeds.add((0, 1), np.tile([0.0, 0.0, 1.0], (10, 1)))
    stats = ModalityStats([PartStats(3)], centre=False)
    stats.add(np.eye(3))
    prototypes, sources = seeds.prototypes(stats.frozen())
    assert np.allclose(prototypes[0], [1, 0, 0]) and sources[0] == "single-label videos"
    assert np.allclose(prototypes[1], [0, 0, 1]) and sources[1] == "multi-label videos"
    assert np.allclose(prototypes[2], 0) and sources[2].startswith("none")


def test_refinement_averages_segments_above_threshold():
    bins = SimilarityBins(2)
    unit = np.zeros((1, 10, 2))
    unit[0, :5] = [1.0, 0.0]
    unit[0, 5:] = [0.0, 1.0]
    similarity = np.zeros((1, 10, 25))
    similarity[0, :5, 0] = 0.9
    similarity[0, 5:, 0] = 0.1
    weak = np.zeros((1, 25), dtype=bool)
    weak[0, 0] = True
    bins.add(similarity, weak, unit.reshape(10, 2).astype(np.float32), np.ones(10, dtype=np.float32))
    thresholds = np.full(25, np.inf)
    thresholds[0] = 0.5
    refined = bins.refined_prototypes(thresholds, np.zeros((25, 2)), np.ones(2))
    assert np.allclose(refined[0], [1, 0])
    assert bins.counts_c_b[0].sum() == 10 and bins.null_counts_c_b[0].sum() == 0


def test_text_anchor_file_round_trip_and_errors(tmp_path: Path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    reversed_classes = list(reversed(LLP_CLASSES))
    visual = rng.standard_normal((25, 8)).astype(np.float32)
    save_file({"visual": visual}, str(tmp_path / "a.safetensors"), metadata={"classes": json.dumps(reversed_classes)})
    anchors = load_text_anchors(tmp_path / "a.safetensors")
    assert set(anchors) == {"visual"}
    speech = LLP_CLASS_INDEX["Speech"]
    expected = visual[reversed_classes.index("Speech")]
    assert np.allclose(anchors["visual"][speech], expected / np.linalg.norm(expected), atol=1e-6)  # reordered by name
    with pytest.raises(AnchorError, match="not found"):
        load_text_anchors(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(AnchorError, match="not a readable safetensors"):
        load_text_anchors(tmp_path / "bad.safetensors")
    save_file({"visual": visual[:20]}, str(tmp_path / "short.safetensors"))
    with pytest.raises(AnchorError, match="shape"):
        load_text_anchors(tmp_path / "short.safetensors")
    save_file({"visual": visual}, str(tmp_path / "classes.safetensors"), metadata={"classes": json.dumps(["Speech"] * 25)})
    with pytest.raises(AnchorError, match="do not match the 25 LLP classes"):
        load_text_anchors(tmp_path / "classes.safetensors")


def tiny_clip_checkpoint(path: Path, embed_dim: int = 768) -> Path:
    """A random CLIP (ViT) with a tiny tower, saved as a plain state dict."""
    model_module = _load_module_from_clip_package("model")
    torch.manual_seed(0)
    model = model_module.CLIP(embed_dim, 32, 1, 64, 16, 77, 49408, 64, 1, 1)
    torch.save(model.state_dict(), path)
    return path


def test_clip_checkpoint_gives_one_unit_anchor_per_class(tmp_path: Path):
    checkpoint = tiny_clip_checkpoint(tmp_path / "clip.pt", embed_dim=48)
    anchors = clip_text_anchors(checkpoint)
    assert anchors.shape == (25, 48) and np.allclose(np.linalg.norm(anchors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(anchors, clip_text_anchors(checkpoint))  # deterministic
    assert len({tuple(np.round(row, 5)) for row in anchors}) == 25  # prompts differ
    with pytest.raises(AnchorError, match="not found"):
        clip_text_anchors(tmp_path / "missing.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(AnchorError, match="not a CLIP state dict"):
        clip_text_anchors(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(AnchorError, match="not a loadable CLIP state dict"):
        clip_text_anchors(tmp_path / "junk.pt")


def test_top_k_matches_brute_force_across_blocks():
    rng = np.random.default_rng(3)
    similarity = rng.standard_normal((5, 37)).astype(np.float32)
    top = TopK(5, 4)
    for start in range(0, 37, 10):
        top.add(similarity[:, start : start + 10], start)
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :4]
    assert np.array_equal(top.index_q_k, expected)


def test_knn_votes_weight_by_similarity():
    similarity = np.array([[0.9, 0.3, -0.5]])
    labels = np.zeros((1, 3, 25), dtype=bool)
    labels[0, 0, 1] = True
    labels[0, 2, 2] = True  # a negative similarity votes nothing
    votes = knn_votes(similarity, labels)
    assert votes[0, 1] == pytest.approx(0.75) and votes[0, 2] == 0.0


def test_vocabulary_mapping_and_errors(tmp_path: Path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"Violin_fiddle": "Cello", "Dog": None}))
    mapping = read_vocabulary(path)
    labels = np.zeros((1, 25), dtype=bool)
    labels[0, [LLP_CLASS_INDEX["Violin_fiddle"], LLP_CLASS_INDEX["Dog"], LLP_CLASS_INDEX["Speech"]]] = True
    mapped = map_labels(labels, mapping)
    assert {LLP_CLASSES[c] for c in np.flatnonzero(mapped[0])} == {"Cello", "Speech"}
    path.write_text(json.dumps({"Dog": "Wolf"}))
    with pytest.raises(VocabularyError, match="'Wolf'"):
        read_vocabulary(path)
    path.write_text("[1, 2]")
    with pytest.raises(VocabularyError, match="JSON object"):
        read_vocabulary(path)
    path.write_text(json.dumps({"Unicorn": "Dog"}))
    with pytest.raises(VocabularyError, match="'Unicorn'"):
        read_vocabulary(path)


def test_segment_cache_gathers_videos_into_a_buffer_minus_the_mean(tmp_path: Path):
    from mertk.migration.embedding import SegmentCache

    rng = np.random.default_rng(3)
    dims = {"audio": 6, "visual": 700}  # visual: more than one gather step of 1 MiB per call
    cache = SegmentCache(tmp_path / "cache", dims)
    cache.open_for_writing()
    blocks = [{m: rng.normal(size=(n, 10, d)).astype(np.float16) for m, d in dims.items()} for n in (70, 55)]
    for block in blocks:
        cache.append_block(block)
    cache.close()
    every = {m: np.concatenate([b[m] for b in blocks]).astype(np.float32) for m in dims}
    indices = np.array([0, 3, 4, 40, 69, 70, 71, 100, 124])
    for modality, dim in dims.items():
        mean_d = rng.normal(size=dim).astype(np.float32)
        out = np.full((len(indices) * 10, dim), np.nan, dtype=np.float32)
        assert cache.read_videos_into(modality, indices, out, mean_d) is out
        assert np.array_equal(out, every[modality][indices].reshape(-1, dim) - mean_d)
        plain = np.empty_like(out)
        assert np.array_equal(cache.read_videos_into(modality, indices, plain), every[modality][indices].reshape(-1, dim))
    with pytest.raises(RuntimeError, match="shorter than expected"):
        cache.read_videos_into("audio", np.array([125]), np.empty((10, 6), dtype=np.float32))
