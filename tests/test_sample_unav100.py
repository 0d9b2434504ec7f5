"""`mertk sample-data unav100`: real layout and timelines, features that carry the planted events, same seed same bytes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import invoke_mertk
from mertk.cli.app import app
from mertk.corpora.llp_features import FeatureFileError
from mertk.corpora.unav100 import feature_path, feature_steps, read_unav_annotations, read_unav_features, step_centres_seconds
from mertk.sample_data.unav100 import (
    INFO_NAME,
    SampleUnavError,
    load_packaged_timelines,
    make_sample_unav100,
    make_world,
    select_timelines,
)
from tests.unav_helpers import REAL_ANNOTATIONS, needs_real_unav

runner = CliRunner()
SIZES = dict(train=12, val=3, test=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unav") / "corpus"
    make_sample_unav100(out, seed=5, progress=False, **SIZES)
    return out


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_real_timelines_and_planted_defects(corpus):
    annotations = read_unav_annotations(corpus)
    names, packaged = load_packaged_timelines()
    assert {s: len(annotations.split(s)) for s in ("train", "val", "test")} == {"train": 12, "val": 3, "test": 3}
    by_id = {t.video_id: t for t in packaged}
    for video in annotations.videos.values():  # real video ids, durations and events, verbatim
        timeline = by_id[video.video_id]
        assert video.subset == timeline.subset and video.duration == timeline.duration
        assert [(e.start, e.end, e.label_id) for e in video.events] == list(timeline.events)
        assert all(names[e.label_id] == e.label for e in video.events)
    info = json.loads((corpus / INFO_NAME).read_text())
    assert sorted(info["rejected_by_design"].values()) == ["missing_flow", "non_finite_vggish", "truncated_rgb"]
    for video_id, kind in info["rejected_by_design"].items():
        with pytest.raises(FeatureFileError):
            read_unav_features(corpus / "av_features", video_id)
    usable = [v for v in annotations.videos if v not in info["rejected_by_design"]]
    for video_id in usable:
        steps = feature_steps(annotations.videos[video_id].duration)
        for part, dim in (("rgb", 1024), ("flow", 1024)):
            assert np.load(feature_path(corpus / "av_features", video_id, part)).shape == (steps, dim)
        assert read_unav_features(corpus / "av_features", video_id).visual_t_d.shape[0] >= steps - 2
    assert sum(info["vggish_length"].values()) == 18


def test_features_carry_the_planted_events(corpus):
    annotations = read_unav_annotations(corpus)
    world = make_world()
    inside, outside = [], []
    for video in annotations.split("test"):
        features = read_unav_features(corpus / "av_features", video.video_id)
        centres = step_centres_seconds(len(features.visual_t_d))
        for event in video.events:
            projection = features.visual_t_d[:, :1024] @ world.directions["rgb"][event.label_id]
            covered = (centres > event.start + 0.5) & (centres < event.end - 0.5)
            others = ~np.any([(centres > e.start - 0.5) & (centres < e.end + 0.5) for e in video.events if e.label_id == event.label_id], axis=0)
            inside += projection[covered].tolist()
            outside += projection[others].tolist()
    assert np.mean(inside) > np.mean(outside) + 0.4


def test_same_seed_same_bytes_and_another_seed_differs(corpus, tmp_path):
    again = tmp_path / "again"
    make_sample_unav100(again, seed=5, progress=False, **SIZES)
    assert digests(again) == digests(corpus)
    other = tmp_path / "other"
    make_sample_unav100(other, seed=6, progress=False, **SIZES)
    changed = {name for name, digest in digests(other).items() if digests(corpus).get(name) != digest}
    assert any(name.endswith("_rgb.npy") for name in changed) and "annotations/unav100_annotations.json" not in changed


def test_refuses_a_folder_it_did_not_write_and_replaces_its_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = invoke_mertk("sample-data", "unav100", "--out", str(foreign), "--train", "2", "--val", "1", "--test", "1")
    assert result.exit_code == 2 and "not empty" in result.output and "Traceback" not in result.output
    assert (foreign / "notes.txt").read_text() == "mine"
    own = tmp_path / "own"
    for train in (3, 2):
        result = runner.invoke(app, ["sample-data", "unav100", "--out", str(own), "--train", str(train), "--val", "1", "--test", "1"])
        assert result.exit_code == 0, result.output
    assert len(list((own / "av_features").glob("*_rgb.npy"))) == 4


def test_asking_for_more_than_the_packaged_timelines_is_one_line(tmp_path):
    with pytest.raises(SampleUnavError, match="--source"):
        make_sample_unav100(tmp_path / "x", train=10_000, progress=False)


@needs_real_unav
def test_packaged_timelines_are_the_selection_from_the_real_file():
    names, packaged = load_packaged_timelines()
    real_names, selected = select_timelines(read_unav_annotations(REAL_ANNOTATIONS))
    assert names == real_names and packaged == selected


@needs_real_unav
def test_planting_on_the_real_file_gives_the_same_corpus(corpus, tmp_path):
    out = tmp_path / "from_real"
    make_sample_unav100(out, seed=5, source=REAL_ANNOTATIONS, progress=False, **SIZES)
    ours, theirs = digests(out), digests(corpus)
    assert {k: v for k, v in ours.items() if k != INFO_NAME} == {k: v for k, v in theirs.items() if k != INFO_NAME}
