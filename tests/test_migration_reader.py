"""LLP feature reader: HAN and language-aligned layouts, every broken-file case, the real CSVs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mertk.corpora.llp_features import (
    FeatureFileError,
    feature_layout,
    pool_to_segments,
    read_feature_file,
    read_llp_videos,
    read_segment_embeddings,
)
from mertk.sample_data.llp import annotation_source, make_sample_llp


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llp_reader")
    make_sample_llp(out, seed=1, train=3, val=1, test=1, progress=False)
    return out


def first_id(corpus: Path) -> str:
    return sorted((corpus / "feats" / "vggish").glob("*.npy"))[0].stem


def test_han_layout_pools_res152_and_appends_r2plus1d(corpus: Path):
    video_id = first_id(corpus)
    embeddings = read_segment_embeddings(corpus, video_id, feature_layout("han"))
    assert embeddings.audio_t_d.shape == (10, 128)
    assert embeddings.visual_t_d.shape == (10, 2048 + 512)
    res152 = np.load(corpus / "feats" / "res152" / f"{video_id}.npy")
    assert np.allclose(embeddings.visual_t_d[:, :2048], res152.reshape(10, 8, 2048).mean(axis=1), atol=1e-6)
    assert np.array_equal(embeddings.visual_t_d[:, 2048:], np.load(corpus / "feats" / "r2plus1d_18" / f"{video_id}.npy"))
    only_res152 = read_segment_embeddings(corpus, video_id, feature_layout("han", r2plus1d=False))
    assert only_res152.visual_t_d.shape == (10, 2048)


def test_clip_layout(corpus: Path):
    embeddings = read_segment_embeddings(corpus, first_id(corpus), feature_layout("clip"))
    assert embeddings.audio_t_d.shape == (10, 768) and embeddings.visual_t_d.shape == (10, 768)
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_layout("vgg")


def test_pool_to_segments_means_groups_of_eight():
    frames = np.arange(80, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    pooled = pool_to_segments(frames)
    assert pooled.shape == (10, 3) and pooled[0, 0] == pytest.approx(3.5) and pooled[9, 2] == pytest.approx(75.5)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("missing", "missing feature file"),
        ("truncated", "truncated or not a .npy array"),
        ("not_npy", "truncated or not a .npy array"),
        ("wrong_shape", "shape (10, 127), expected (10, 128)"),
        ("non_finite", "non-finite values (first in row 3)"),
        ("integer", "dtype int32, expected floating point"),
    ],
)
def test_each_broken_file_names_the_file(tmp_path: Path, case: str, reason: str):
    path = tmp_path / "feats" / "vggish" / "abcdefghijk.npy"
    path.parent.mkdir(parents=True)
    good = np.ones((10, 128), dtype=np.float32)
    if case == "truncated":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "not_npy":
        path.write_text("not an array")
    elif case == "wrong_shape":
        np.save(path, np.ones((10, 127), dtype=np.float32))
    elif case == "non_finite":
        bad = good.copy()
        bad[3, 5] = np.nan
        np.save(path, bad)
    elif case == "integer":
        np.save(path, np.ones((10, 128), dtype=np.int32))
    with pytest.raises(FeatureFileError) as error:
        read_feature_file(path, 10, 128)
    assert reason in str(error.value) and str(path) in str(error.value)
    assert error.value.file == str(path)


def test_reads_the_real_csvs_as_they_are():
    with annotation_source(None) as real_llp:  # the real files, as the package ships them
        listing = read_llp_videos(real_llp)
    videos, bad = listing.videos, listing.rejections
    assert len(videos) == 11849 and bad == []
    assert {v.split for v in videos} == {"train", "val", "test"}
    first = videos[0]
    assert first.filename == "BjCEufrlXm4_20_30" and first.video_id == "BjCEufrlXm4" and first.labels == ("Speech", "Dog")


def test_duplicate_and_bad_rows_are_returned_not_raised(tmp_path: Path):
    (tmp_path / "AVVP_train.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\nxxxxxxxxxxx_0_10\tNotAClass\n")
    (tmp_path / "AVVP_val_pd.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech\n")
    listing = read_llp_videos(tmp_path)
    videos, bad = listing.videos, listing.rejections
    assert [v.filename for v in videos] == ["BjCEufrlXm4_20_30"]
    reasons = " | ".join(row.reason for row in bad)
    assert "NotAClass" in reasons and "already listed in split train" in reasons


def test_block_reader_matches_the_per_video_reader_and_rejects_per_video(corpus: Path, tmp_path: Path):
    import shutil

    from mertk.execution.blocks import BlockReader

    copy = tmp_path / "copy"
    shutil.copytree(corpus / "feats", copy / "feats")
    ids = sorted(p.stem for p in (copy / "feats" / "vggish").glob("*.npy"))
    # Files off the fast path, still valid: float64 and Fortran order (read through np.load).
    res152 = np.load(copy / "feats" / "res152" / f"{ids[0]}.npy")
    np.save(copy / "feats" / "res152" / f"{ids[0]}.npy", res152.astype(np.float64))
    r2plus1d = np.load(copy / "feats" / "r2plus1d_18" / f"{ids[1]}.npy")
    np.save(copy / "feats" / "r2plus1d_18" / f"{ids[1]}.npy", np.asfortranarray(r2plus1d))
    # Broken ones: truncated res152 (fast path falls back to np.load) and a NaN in vggish.
    truncated = copy / "feats" / "res152" / f"{ids[2]}.npy"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    bad = np.load(copy / "feats" / "vggish" / f"{ids[3]}.npy")
    bad[2, 1] = np.nan
    np.save(copy / "feats" / "vggish" / f"{ids[3]}.npy", bad)
    np.save(copy / "feats" / "vggish" / f"{ids[4]}.npy", np.zeros((10, 127), dtype=np.float32))  # other header
    layout = feature_layout("han")
    block = BlockReader(copy, layout, half_dtype=np.float16).read([*ids, "NoSuchVideo"])  # missing: open fails
    assert "truncated or not a .npy array" in str(block.errors[2]) and block.errors[2].file.endswith(f"{ids[2]}.npy")
    assert "non-finite values (first in row 2)" in str(block.errors[3])
    assert "shape (10, 127), expected (10, 128)" in str(block.errors[4])
    assert "missing feature file" in str(block.errors[5]) and block.errors[5].file.endswith("vggish/NoSuchVideo.npy")
    assert not block.arrays["visual"][5].any() and not block.sums["visual"][5].any()
    for row, video_id in enumerate(ids):
        if row in (2, 3, 4):
            assert not block.arrays["visual"][row].any() and not block.sums["audio"][row].any()
            continue
        assert block.errors[row] is None
        expected = read_segment_embeddings(copy, video_id, layout)
        for modality in ("audio", "visual"):
            assert np.array_equal(block.arrays[modality][row], expected.modality(modality))  # bit for bit
            assert np.array_equal(block.sums[modality][row], expected.modality(modality).sum(axis=0, dtype=np.float64))
            assert np.array_equal(block.half[modality][row], expected.modality(modality).astype(np.float16))


def test_cast_float_is_numpy_astype_bit_for_bit():
    from mertk.execution.blocks import cast_float

    values = np.random.default_rng(0).normal(size=(30, 257)).astype(np.float32)
    values[0, :6] = [-0.0, 7e4, -7e4, 1e-6, 3e-8, np.inf]  # overflow, subnormal and zero halves
    half = cast_float(values, np.float16)
    with np.errstate(over="ignore"):
        assert np.array_equal(half.view(np.uint16), values.astype(np.float16).view(np.uint16))
    assert np.array_equal(cast_float(half, np.float32).view(np.uint32), half.astype(np.float32).view(np.uint32))
    assert cast_float(values[None], np.float16).shape == (1, 30, 257)
    into = np.empty((30 * 257,), dtype=np.float32)  # any shape with the same number of values
    assert cast_float(half, np.float32, out=into) is into
    assert np.array_equal(into.view(np.uint32), half.astype(np.float32).view(np.uint32).ravel())
    with pytest.raises(ValueError, match="out must be"):
        cast_float(half, np.float32, out=np.empty(10, dtype=np.float32))
