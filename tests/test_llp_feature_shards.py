"""Feature shards of many videos: the generator writes them, the reader streams them and names bad rows."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mertk.cli.app import app
from mertk.corpora.llp_feature_shards import (
    FeatureShardError,
    ShardBlockReader,
    feature_shard_files,
    has_feature_shards,
    list_sharded_videos,
)
from mertk.corpora.llp_features import feature_layout
from mertk.execution.blocks import BlockReader
from mertk.errors import InputError
from mertk.sample_data.folder import INFO_NAME
from mertk.sample_data.llp import make_sample_llp
from mertk.sample_data.llp_shards import ShardLayoutOptions, make_sample_llp_shards, pretraining_videos

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "sample_data" / "llp"  # the committed LLP annotation rows: present in every clone
VIDEOS = 20


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def per_video(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llp_videos")
    make_sample_llp(out, seed=2, videos=VIDEOS, source=SOURCE, progress=False)
    return out


@pytest.mark.parametrize("file_format", ["parquet", "npy"])
def test_shards_hold_the_per_video_features(per_video, tmp_path, file_format):
    options = ShardLayoutOptions(videos_per_shard=7, features="all", file_format=file_format, dtype="float32")
    summary = make_sample_llp_shards(tmp_path / "s", videos=VIDEOS, seed=2, options=options, source=SOURCE, progress=False)
    assert summary.feature_files == 3 and has_feature_shards(tmp_path / "s")
    assert [p.name for p in feature_shard_files(tmp_path / "s")] == [f"features-0000{i}.{file_format}" for i in range(3)]
    for features in ("han", "clip"):
        layout = feature_layout(features)
        videos, problems = list_sharded_videos(tmp_path / "s", layout)
        assert problems == [] and len(videos) == VIDEOS
        block = ShardBlockReader(layout).read(videos[3:15])  # spans two shards
        expected = BlockReader(per_video, layout).read([v.video_id for v in videos[3:15]])
        assert block.video_ids == expected.video_ids and block.errors == [None] * 12
        for modality in ("audio", "visual"):
            np.testing.assert_allclose(block.arrays[modality], expected.arrays[modality], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(block.sums[modality], expected.sums[modality], rtol=1e-5)
            np.testing.assert_allclose(block.part_squares[modality], expected.part_squares[modality], rtol=1e-5)
    # the annotation files are the per-video layout's, byte for byte
    for name in ("AVVP_train.csv", "AVVP_eval_audio.csv", "ground_truth_visual.csv", "text_anchors.safetensors"):
        assert (tmp_path / "s" / name).read_bytes() == (per_video / name).read_bytes()


def test_same_seed_same_bytes_and_float16_by_default(tmp_path):
    options = ShardLayoutOptions(videos_per_shard=8, features="clip")
    for name in ("a", "b"):
        make_sample_llp_shards(tmp_path / name, videos=10, seed=5, options=options, source=SOURCE, progress=False)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    table = pq.read_table(feature_shard_files(tmp_path / "a")[0])
    assert table.column_names == ["video_id", "segment", "clip", "clap"]
    assert table.schema.field("clip").type == pa.list_(pa.float16(), 768)
    assert json.loads((tmp_path / "a" / INFO_NAME).read_text())["layout"] == "shards"


def test_past_llp_the_corpus_goes_on_with_unlisted_pretraining_videos():
    videos = list(pretraining_videos(SOURCE, 0, 11_849, 3))
    assert [v.weak.video_id for v in videos] == ["pt000011849", "pt000011850", "pt000011851"]
    for video in videos:
        assert len(video.weak.video_id) == 11 and video.weak.labels
        weak = video.weak.label_vector()
        assert not (video.audio_c_t | video.visual_c_t)[~weak].any()  # events only of weak classes
        assert (video.audio_c_t | video.visual_c_t)[weak].any()


def _write(path: Path, ids: list[str], segments: list[int], dim: int = 768, values=None) -> None:
    values = np.zeros((len(ids), dim), np.float32) if values is None else values
    columns = {"video_id": pa.array(ids), "segment": pa.array(segments, pa.int8())}
    for name in ("clip", "clap"):
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def test_bad_videos_are_rejected_with_file_and_rows(tmp_path):
    layout = feature_layout("clip")
    shards = tmp_path / "shards"
    good = [f"v{i:010d}" for i in range(2)]
    values = np.ones((20 + 9 + 10, 768), np.float32)
    values[30, 5] = np.nan  # the second segment of the last video
    ids = [good[0]] * 10 + [good[1]] * 10 + ["short000000"] * 9 + ["nan00000000"] * 10
    _write(shards / "features-00000.parquet", ids, list(range(10)) * 2 + list(range(9)) + list(range(10)), values=values)
    _write(shards / "features-00001.parquet", [good[0]] * 10 + ["swap0000000"] * 10, list(range(10)) + [1, 0, *range(2, 10)])
    videos, problems = list_sharded_videos(tmp_path, layout)
    assert [v.video_id for v in videos] == [*good, "nan00000000"]
    reasons = [str(p) for p in problems]
    assert any("features-00000.parquet: rows 20-28" in r and "short000000" in r and "expected 0..9" in r for r in reasons)
    assert any("features-00001.parquet: rows 0-9" in r and "already listed" in r for r in reasons)
    assert any("features-00001.parquet: rows 10-19" in r and "swap0000000" in r for r in reasons)
    block = ShardBlockReader(layout).read(videos)
    assert block.errors[:2] == [None, None]
    assert "features-00000.parquet: row 30" in str(block.errors[2]) and "non-finite" in str(block.errors[2])
    assert (block.arrays["audio"][2] == 0).all()


def test_a_shard_without_the_layouts_columns_stops_with_one_line(tmp_path):
    _write(tmp_path / "shards" / "features-00000.parquet", ["a" * 11] * 10, list(range(10)))
    with pytest.raises(FeatureShardError, match=r"features-00000.parquet: no column vggish, res152, r2plus1d_18"):
        list_sharded_videos(tmp_path, feature_layout("han"))
    (tmp_path / "shards" / "features-00001.npy").write_bytes(b"not numpy")
    with pytest.raises(FeatureShardError, match="both .parquet and .npy"):
        feature_shard_files(tmp_path)
    with pytest.raises(FeatureShardError, match="no features-"):
        feature_shard_files(tmp_path / "elsewhere")


def test_cli_writes_a_shard_corpus(tmp_path):
    out = tmp_path / "corpus"
    result = CliRunner().invoke(
        app,
        ["sample-data", "llp", "--out", str(out), "--videos", "12", "--layout", "shards", "--shard-videos", "5",
         "--shard-features", "clip", "--source", str(SOURCE)],
    )
    assert result.exit_code == 0, result.output
    assert "in 3 feature shards" in result.output
    videos, problems = list_sharded_videos(out, feature_layout("clip"))
    assert len(videos) == 12 and not problems
    result = CliRunner().invoke(app, ["sample-data", "llp", "--out", str(tmp_path / "x"), "--videos", "3", "--layout", "shards", "--shard-format", "csv", "--source", str(SOURCE)])
    assert result.exit_code == 2 and "--shard-format" in result.output  # a choice the CLI checks
    with pytest.raises(InputError, match="--shard-format must be one of parquet, npy"):  # and the function
        make_sample_llp_shards(tmp_path / "y", videos=3, options=ShardLayoutOptions(file_format="csv"), source=SOURCE, progress=False)
