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
from mertk.sample_data.llp import REAL_LLP, make_sample_llp


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
    videos, bad = read_llp_videos(REAL_LLP)
    assert len(videos) == 11849 and bad == []
    assert {v.split for v in videos} == {"train", "val", "test"}
    first = videos[0]
    assert first.filename == "BjCEufrlXm4_20_30" and first.video_id == "BjCEufrlXm4" and first.labels == ("Speech", "Dog")


def test_duplicate_and_bad_rows_are_returned_not_raised(tmp_path: Path):
    (tmp_path / "AVVP_train.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\nxxxxxxxxxxx_0_10\tNotAClass\n")
    (tmp_path / "AVVP_val_pd.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech\n")
    videos, bad = read_llp_videos(tmp_path)
    assert [v.filename for v in videos] == ["BjCEufrlXm4_20_30"]
    reasons = " | ".join(row.reason for row in bad)
    assert "NotAClass" in reasons and "already listed in split train" in reasons
