"""UnAV-100 reader: the real annotation file whole, and broken twins of annotations and features."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mertk.corpora.llp_features import FeatureFileError
from mertk.corpora.unav100 import (
    TRUNCATE_TOLERANCE_STEPS,
    UnavAnnotationError,
    feature_path,
    feature_steps,
    read_unav_annotations,
    read_unav_features,
    seconds_to_steps,
    step_centres_seconds,
)
from tests.unav_helpers import REAL_ANNOTATIONS, needs_real_unav


@needs_real_unav
def test_reads_the_real_annotation_file_whole():
    annotations = read_unav_annotations(REAL_ANNOTATIONS)
    assert len(annotations.videos) == 10_790
    assert annotations.event_count + annotations.duplicates_removed == 30_059
    assert len(annotations.class_names) == 100 and sorted(annotations.class_names) == list(range(100))
    assert Counter(v.subset for v in annotations.videos.values()) == {"train": 6489, "validation": 2134, "test": 2167}
    assert len(annotations.split("val")) == 2134
    durations = np.array([v.duration for v in annotations.videos.values()])
    assert durations.min() > 0 and all(e.end <= v.duration + 1 for v in annotations.videos.values() for e in v.events)
    concurrent = sum(1 for v in annotations.videos.values() if any(a.start < b.end and b.start < a.end for i, a in enumerate(v.events) for b in v.events[i + 1 :]))
    assert concurrent > 1000  # overlapping events are the point of the corpus


def _write(tmp_path: Path, database: dict) -> Path:
    path = tmp_path / "unav100_annotations.json"
    path.write_text(json.dumps({"version": "test", "database": database}))
    return path


def _video(subset="train", duration=20, events=(([1.0, 4.0], "dog barking", 3),)):
    return {"subset": subset, "duration": duration, "annotations": [{"segment": s, "label": l, "label_id": i} for s, l, i in events]}


def test_duplicated_events_count_once(tmp_path):
    events = (([1.0, 4.0], "dog", 3), ([1.0004, 3.9995], "dog", 3), ([1.0, 4.0], "cat", 4), ([1.0, 4.01], "dog", 3))
    annotations = read_unav_annotations(_write(tmp_path, {"v1": _video(events=events)}))
    video = annotations.videos["v1"]
    assert video.duplicates_removed == 1
    assert [(e.label, e.end) for e in video.events] == [("dog", 4.0), ("cat", 4.0), ("dog", 4.01)]


@pytest.mark.parametrize(
    "entry, message",
    [
        (_video(subset="dev"), "subset 'dev'"),
        (_video(duration=-3), "duration -3"),
        (_video(events=(([5.0, 2.0], "dog", 3),)), "annotation 0: segment [5.0, 2.0] is empty"),
        (_video(events=(([1.0, 2.0], "dog", 100),)), "label_id 100"),
        (_video(events=(([1.0, 2.0], "dog", 3), ([3.0, 4.0], "cat", 3))), "label_id 3 is 'cat' here but 'dog'"),
        ({"subset": "train", "duration": 5, "annotations": [{"segment": [1, "x"], "label": "dog", "label_id": 3}]}, "expected [start, end]"),
    ],
)
def test_bad_annotations_name_file_and_video(tmp_path, entry, message):
    with pytest.raises(UnavAnnotationError) as error:
        read_unav_annotations(_write(tmp_path, {"vid_x": entry}))
    assert "vid_x" in str(error.value) and message in str(error.value) and str(tmp_path) in str(error.value)


def test_unreadable_or_absent_annotation_file(tmp_path):
    (tmp_path / "unav100_annotations.json").write_text("{not json")
    with pytest.raises(UnavAnnotationError, match="not a readable JSON"):
        read_unav_annotations(tmp_path)
    with pytest.raises(UnavAnnotationError, match="no unav100_annotations.json"):
        read_unav_annotations(tmp_path / "elsewhere")


def _features(folder: Path, video_id: str, visual_steps: int, audio_steps: int, rng=np.random.default_rng(0)) -> None:
    for part, steps, dim in (("rgb", visual_steps, 1024), ("flow", visual_steps, 1024), ("vggish", audio_steps, 128)):
        np.save(feature_path(folder, video_id, part), rng.standard_normal((steps, dim)).astype(np.float32))


def test_feature_alignment_equal_truncated_resampled(tmp_path):
    _features(tmp_path, "same", 40, 40)
    _features(tmp_path, "near", 40, 40 - TRUNCATE_TOLERANCE_STEPS)
    _features(tmp_path, "hop", 60, 20)
    same, near, hop = (read_unav_features(tmp_path, v) for v in ("same", "near", "hop"))
    assert same.alignment.method == "equal" and same.visual_t_d.shape == (40, 2048) and same.audio_t_d.shape == (40, 128)
    assert near.alignment.method == "truncated" and near.visual_t_d.shape[0] == near.audio_t_d.shape[0] == 40 - TRUNCATE_TOLERANCE_STEPS
    assert hop.alignment.to_dict() == {"visual_steps": 60, "audio_steps": 20, "steps": 60, "method": "resampled"}
    raw = np.load(feature_path(tmp_path, "hop", "vggish"))
    np.testing.assert_allclose(hop.audio_t_d[[0, -1]], raw[[0, -1]], rtol=1e-6)  # the ends stay where they were


def test_a_video_far_longer_than_a_minute_is_read_whole(tmp_path):
    steps = feature_steps(600.0)  # ten minutes
    _features(tmp_path, "long", steps, steps)
    assert read_unav_features(tmp_path, "long").visual_t_d.shape == (steps, 2048)


@pytest.mark.parametrize("defect, reason", [("missing", "missing feature file"), ("truncated", "truncated or not a .npy"),
                                            ("nan", "non-finite"), ("shape", "expected (steps > 0, 128)")])  # fmt: skip
def test_damaged_feature_files_are_named(tmp_path, defect, reason):
    _features(tmp_path, "v", 30, 30)
    path = feature_path(tmp_path, "v", "vggish")
    if defect == "missing":
        path.unlink()
    elif defect == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif defect == "nan":
        array = np.load(path); array[7, 3] = np.nan; np.save(path, array)  # fmt: skip
    else:
        np.save(path, np.zeros((30, 64), np.float32))
    with pytest.raises(FeatureFileError) as error:
        read_unav_features(tmp_path, "v")
    assert error.value.file == str(path) and reason in error.value.reason


def test_step_times_follow_the_i3d_windows():
    assert feature_steps(10.0) == (250 - 24) // 8 + 1
    np.testing.assert_allclose(step_centres_seconds(3), [0.48, 0.80, 1.12])
    np.testing.assert_allclose(seconds_to_steps(step_centres_seconds(50)), np.arange(50), atol=1e-9)
