"""LLP annotation reader: the real files of ../shared/data/llp and broken twins of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data_folder

from mertk.corpora.llp_annotations import (
    LLP_CLASS_INDEX,
    LLP_CLASSES,
    BadRow,
    LlpAnnotationError,
    WeakLabel,
    llp_annotation_files,
    read_dense_labels,
    read_split_dense_labels,
    read_weak_labels,
    require_annotation_file,
)

LLP = shared_data_folder("llp") or Path("absent")
needs_llp = pytest.mark.skipif(not (LLP / "AVVP_train.csv").is_file(), reason="needs the real LLP files in ../shared/data/llp (absent in a fresh clone)")


def test_classes_in_design_order():
    assert len(LLP_CLASSES) == 25
    assert LLP_CLASSES[0] == "Speech" and LLP_CLASSES[5] == "Frying_(food)" and LLP_CLASSES[-1] == "Clapping"
    assert all(LLP_CLASS_INDEX[name] == index for index, name in enumerate(LLP_CLASSES))


@needs_llp
@pytest.mark.parametrize("split, count", [("train", 10_000), ("val", 649), ("test", 1_200), ("full", 11_849)])
def test_real_weak_label_files(split, count):
    records = read_weak_labels(llp_annotation_files(LLP)[split], split)
    assert len(records) == count
    assert len({record.filename for record in records}) == count
    assert all(record.video_id == record.filename[:11] and record.split == split for record in records)
    if split in ("train", "full"):
        assert records[0] == WeakLabel("BjCEufrlXm4_20_30", "BjCEufrlXm4", split, ("Speech", "Dog"))
        assert records[0].label_vector().nonzero()[0].tolist() == [0, 3]


@needs_llp
@pytest.mark.parametrize(
    "split, empty_runs, unknown_video, not_in_weak, audio_segments, visual_segments",
    [("val", 1, 25, 52, 8089, 6115), ("test", 4, 25, 75, 14576, 11789)],
)
def test_real_dense_labels_load_with_their_defects(
    split, empty_runs, unknown_video, not_in_weak, audio_segments, visual_segments
):
    weak, dense = read_split_dense_labels(LLP, split)
    assert dense.audio_v_c_t.shape == (len(weak), 25, 10)
    counts = dense.defects.counts()
    assert counts == {
        "empty_runs": empty_runs,
        "out_of_range": 0,
        "unknown_video": unknown_video,
        "not_in_weak_label": not_in_weak,
        "malformed": 0,
    }
    assert int(dense.audio_v_c_t.sum()) == audio_segments
    assert int(dense.visual_v_c_t.sum()) == visual_segments
    summary = dense.defects.summary()
    assert f"{empty_runs} rows with onset >= offset" in summary and "no val/test video" in summary
    # the defect names file and line
    assert any("AVVP_eval_audio.csv:19:" in str(bad) and "AkAfFL5Q4QA_30_40" in str(bad) for bad in dense.defects.unknown_video)
    if split == "test":  # a known video: audio Blender in the last two seconds, visual all along
        audio_c_t, visual_c_t = dense.matrices("KSRjje7GH44_60_70")
        assert audio_c_t[LLP_CLASS_INDEX["Blender"]].tolist() == [False] * 8 + [True] * 2
        assert visual_c_t[LLP_CLASS_INDEX["Blender"]].all()


def test_files_found_at_root_or_in_data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "AVVP_val_pd.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tDog\n")
    (tmp_path / "AVVP_eval_audio.csv").write_text("filename\tonset\toffset\tevent_labels\n")
    files = llp_annotation_files(tmp_path)
    assert files == {"val": tmp_path / "data" / "AVVP_val_pd.csv", "audio": tmp_path / "AVVP_eval_audio.csv"}
    with pytest.raises(LlpAnnotationError, match="AVVP_test_pd.csv not found"):
        require_annotation_file(tmp_path, "test")
    with pytest.raises(LlpAnnotationError, match="not a folder"):
        llp_annotation_files(tmp_path / "missing")


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LlpAnnotationError, match="no LLP annotation files"):
        llp_annotation_files(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_weak_labels_broken_twin(tmp_path):
    path = write(
        tmp_path / "AVVP_train.csv",
        "filename\tevent_labels\n"
        "BjCEufrlXm4_20_30\tSpeech,Dog\n"
        "7nSYwyaP4QE_50_60\tSinging,Bagpipes\n"
        "short_1_2\tDog\n"
        "BjCEufrlXm4_20_30\tDog\n"
        "xxxxxxxxxxx_0_10\n"
        "yyyyyyyyyyy_0_10\t\n"
        "zzzzzzzzzzz_0_10\tCat,Cat\n",
    )
    with pytest.raises(LlpAnnotationError, match=r"AVVP_train.csv:3: 7nSYwyaP4QE_50_60: unknown class 'Bagpipes'"):
        read_weak_labels(path, "train")
    rejections: list[BadRow] = []
    records = read_weak_labels(path, "train", rejections=rejections)
    assert [record.filename for record in records] == ["BjCEufrlXm4_20_30", "zzzzzzzzzzz_0_10"]
    assert records[1].labels == ("Cat",)
    assert [bad.line for bad in rejections] == [3, 4, 5, 6, 7]
    assert "repeated (first on line 2)" in rejections[2].reason
    assert "expected 2 tab-separated fields" in rejections[3].reason
    assert "no event labels" in rejections[4].reason


def test_wrong_header_and_missing_file(tmp_path):
    path = write(tmp_path / "AVVP_val_pd.csv", "filename,event_labels\nBjCEufrlXm4_20_30,Dog\n")
    with pytest.raises(LlpAnnotationError, match=r"AVVP_val_pd.csv:1: header"):
        read_weak_labels(path, "val")
    with pytest.raises(LlpAnnotationError, match="file not found"):
        read_weak_labels(tmp_path / "nope.csv", "val")


def test_dense_labels_broken_twin(tmp_path):
    header = "filename\tonset\toffset\tevent_labels\n"
    audio = write(
        tmp_path / "AVVP_eval_audio.csv",
        header
        + "aaaaaaaaaaa_0_10\t0\t4\tDog\n"  # used
        + "aaaaaaaaaaa_0_10\t9\t9\tDog\n"  # onset >= offset: nothing
        + "aaaaaaaaaaa_0_10\t9\t0\tDog\n"  # onset > offset: nothing
        + "aaaaaaaaaaa_0_10\t8\t12\tSpeech\n"  # outside [0, 10]: clipped, Speech not in weak label
        + "bbbbbbbbbbb_0_10\t0\t10\tCat\n"  # the other split: skipped silently
        + "truncated_0_10\t0\t10\tCat\n"  # no video: defect
        + "aaaaaaaaaaa_0_10\tx\t3\tDog\n"  # malformed
        + "aaaaaaaaaaa_0_10\t0\t3\tDogs\n",  # unknown class
    )
    visual = write(tmp_path / "AVVP_eval_visual.csv", header + "aaaaaaaaaaa_0_10\t2\t5\tDog\n")
    weak = [WeakLabel("aaaaaaaaaaa_0_10", "aaaaaaaaaaa", "val", ("Dog",)), WeakLabel("ccccccccccc_0_10", "ccccccccccc", "val", ("Car",))]
    dense = read_dense_labels(audio, visual, weak, other_filenames=["bbbbbbbbbbb_0_10"])
    counts = dense.defects.counts()
    assert counts == {"empty_runs": 2, "out_of_range": 1, "unknown_video": 1, "not_in_weak_label": 1, "malformed": 2}
    assert dense.rows_of_other_videos == 1
    audio_c_t, visual_c_t = dense.matrices("aaaaaaaaaaa_0_10")
    assert np.flatnonzero(audio_c_t[LLP_CLASS_INDEX["Dog"]]).tolist() == [0, 1, 2, 3]
    assert np.flatnonzero(audio_c_t[LLP_CLASS_INDEX["Speech"]]).tolist() == [8, 9]
    assert np.flatnonzero(visual_c_t[LLP_CLASS_INDEX["Dog"]]).tolist() == [2, 3, 4]
    assert not dense.audio_v_c_t[dense.index_of("ccccccccccc_0_10")].any()  # no rows: no event
    assert dense.defects.empty_runs[0].line == 3
    assert "AVVP_eval_audio.csv:4" in str(dense.defects.empty_runs[1])
