"""CAS(ME)^3 part A and MMEW readers on the real layouts; CASME II's later sheet revisions; broken twins."""
from __future__ import annotations

from pathlib import Path

import pytest
from mer_sheets import frames, write_xlsx

from mertk.au.notation import AuLabel
from mertk.corpora.casme2 import read_casme2
from mertk.corpora.casme3 import SHEET_NAME as CASME3_SHEET
from mertk.corpora.casme3 import read_casme3
from mertk.corpora.mer import CorpusLayoutError
from mertk.corpora.mmew import SHEET_NAME as MMEW_SHEET
from mertk.corpora.mmew import read_mmew

CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


def casme3_corpus(root: Path, rows: list[list[str]], recordings: dict[tuple[str, str], range], under: str = "data/part_A") -> Path:
    for (subject, recording), numbers in recordings.items():
        frames(root / under / subject / recording / "color", [f"{n}.jpg" for n in numbers])
    write_xlsx(root / CASME3_SHEET, CASME3_HEADER, rows)  # every cell a text cell, as released
    return root


def test_casme3_text_cells_short_emotions_prefixes_and_recoverable_frames(tmp_path):
    rows = [
        ["spNO.1", "a", "116", "125", "140", "T28+14", "1", "happy"],
        ["spNO.1", "a", "20", "12", "40", "B23", "3", "Others"],  # apex before onset
        ["spNO.1", "b", "30", "0", "45", "4", "4", "others"],  # apex 0
        ["spNO.2", "a", "50", "58", "0", "L12", "1", "Surprise"],  # offset 0
        ["spNO.2", "a", "150", "0", "0", "4+7", "5", "sad"],  # apex and offset 0, near the end of the recording
    ]
    recordings = {("spNO.1", "a"): range(0, 200), ("spNO.1", "b"): range(0, 60), ("spNO.2", "a"): range(0, 160)}
    listing = read_casme3(casme3_corpus(tmp_path, rows, recordings))
    assert listing.rejections == []
    samples = {s.sample_id: s for s in listing.samples}
    assert list(samples) == ["spNO.1/a_116", "spNO.1/a_20", "spNO.1/b_30", "spNO.2/a_50", "spNO.2/a_150"]
    first = samples["spNO.1/a_116"]
    assert (first.dataset, first.fps, first.onset_frame, first.apex_frame, first.offset_frame) == ("casme3", 30.0, 116, 125, 140)
    assert first.au_labels == (AuLabel(28, None, None, "T"), AuLabel(14))
    assert first.frame_numbers == tuple(range(116, 141)) and first.frame_path(116).parts[-2:] == ("color", "116.jpg")
    assert (first.emotion, first.label("casme3-7class"), first.label("casme3-4class"), first.label("casme3-3class"), first.emotion_3class) == (
        "happy", "happy", "positive", "positive", "positive",
    )
    assert first.objective_class == "I"
    before = samples["spNO.1/a_20"]
    assert before.apex_frame is None and "before onset 20" in before.apex_note and before.au_labels == (AuLabel(23, None, None, "B"),)
    assert (before.emotion, before.label("casme3-4class"), before.label("casme3-3class")) == ("others", "others", None)
    assert samples["spNO.1/b_30"].apex_frame is None and "'0'" in samples["spNO.1/b_30"].apex_note
    open_ended = samples["spNO.2/a_50"]
    assert open_ended.offset_estimated and open_ended.offset_frame == 50 + 15 and open_ended.apex_frame == 58
    assert "Offset '0'" in open_ended.offset_note
    end = samples["spNO.2/a_150"]
    assert end.offset_frame == 159 and end.apex_frame is None and end.offset_estimated  # bounded by the recording
    assert (end.emotion, end.label("casme3-4class")) == ("sad", "negative")
    assert not any(s.offset_estimated for s in (first, before))


def test_casme3_broken_rows(tmp_path):
    rows = [
        ["spNO.1", "a", "10", "12", "20", "4", "1", "happy"],
        ["spNO.1", "a", "0", "12", "20", "4", "1", "happy"],  # no onset
        ["spNO.1", "a", "30", "35", "25", "4", "1", "happy"],  # offset before onset
        ["spNO.1", "a", "49", "0", "0", "4", "1", "happy"],  # onset is the last frame, no offset
        ["spNO.1", "z", "10", "12", "20", "4", "1", "happy"],  # no such recording
        ["spNO.1", "a", "10", "12", "20", "4", "1", "bored"],
        ["spNO.1", "a", "10", "12", "80", "4", "1", "happy"],  # offset past the recording
    ]
    listing = read_casme3(casme3_corpus(tmp_path, rows, {("spNO.1", "a"): range(0, 50)}))
    assert [s.sample_id for s in listing.samples] == ["spNO.1/a_10"]
    reasons = [r.reason for r in listing.rejections]
    assert len(reasons) == 6
    assert reasons[0].startswith(f"{CASME3_SHEET} row 3: Onset '0': no start frame")
    assert "offset 25 is not after onset 30" in reasons[1]
    assert "nothing to recover the clip from" in reasons[2]
    assert "frame folder data/part_A/spNO.1/z/color is missing" in reasons[3]
    assert "unknown emotion 'bored'" in reasons[4]
    assert "offset frame 80.jpg missing in data/part_A/spNO.1/a/color" in reasons[5]


def test_casme3_wrong_folder_or_sheet(tmp_path):
    with pytest.raises(CorpusLayoutError, match="no CAS\\(ME\\)\\^3 part A micro-expression sheet found"):
        read_casme3(tmp_path)
    root = casme3_corpus(tmp_path, [], {("spNO.1", "a"): range(3)})
    write_xlsx(root / CASME3_SHEET, ["Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units", "Estimated Emotion"], [])
    with pytest.raises(CorpusLayoutError, match="not a CAS\\(ME\\)\\^3 part A coding sheet.*expected Subject, Filename, Onset, Apex, Offset, AU, emotion"):
        read_casme3(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_xlsx(empty / CASME3_SHEET, CASME3_HEADER, [])
    with pytest.raises(CorpusLayoutError, match="no CAS\\(ME\\)\\^3 frame folders"):
        read_casme3(empty)


# --- MMEW -------------------------------------------------------------------------------------

MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]


def mmew_corpus(root: Path, rows: list[list], clips: dict[tuple[str, str], range]) -> Path:
    for (emotion, name), numbers in clips.items():
        frames(root / "Micro_Expression" / emotion / name, [f"{n}.jpg" for n in numbers])
    write_xlsx(root / MMEW_SHEET, MMEW_HEADER, rows)
    return root


def test_mmew_side_letters_either_side_and_emotion_folders(tmp_path):
    rows = [
        ["S01", "S01_happiness_01", 10, 15, 25, "12L", "Happiness"],
        [2, "S02_disgust_01", 1, 5, 12, "4R+7", "disgust"],
        ["S02", "S02_others_01", 1, 30, 12, "L14", "Others"],  # apex after offset
    ]
    clips = {("happiness", "S01_happiness_01"): range(10, 26), ("disgust", "S02_disgust_01"): range(1, 13), ("others", "S02_others_01"): range(1, 13)}
    listing = read_mmew(mmew_corpus(tmp_path, rows, clips))
    assert listing.rejections == []
    first, second, third = listing.samples
    assert (first.sample_id, first.qualified_id, first.fps) == ("S01/S01_happiness_01", "mmew/S01/S01_happiness_01", 90.0)
    assert first.au_labels == (AuLabel(12, "L"),) and first.frame_path(15).name == "15.jpg"
    assert (first.emotion_3class, first.label("mmew-4class")) == ("positive", "happiness")
    assert second.subject == "S02" and second.au_labels == (AuLabel(4, "R"), AuLabel(7))
    assert third.au_labels == (AuLabel(14, "L"),) and third.apex_frame is None and third.emotion == "others" and third.emotion_3class is None


def test_mmew_broken_rows_and_wrong_folder(tmp_path):
    rows = [
        ["S01", "S01_happiness_01", 10, 15, 25, "12", "happiness"],
        ["S01", "S01_fear_01", 1, 3, 9, "4", "fear"],  # filed under the wrong emotion
        ["S01", "S01_fear_02", 1, 3, 9, "4+Z", "fear"],
        ["S01", "../S01", 1, 3, 9, "4", "fear"],
    ]
    clips = {("happiness", "S01_happiness_01"): range(10, 26), ("sadness", "S01_fear_01"): range(1, 10), ("fear", "S01_fear_02"): range(1, 10)}
    listing = read_mmew(mmew_corpus(tmp_path, rows, clips))
    assert [s.clip for s in listing.samples] == ["S01_happiness_01"]
    reasons = [r.reason for r in listing.rejections]
    assert "frame folder Micro_Expression/fear/S01_fear_01 is missing; it lies under sadness" in reasons[0]
    assert "not an Action Unit: 'Z'" in reasons[1]
    assert "would leave the corpus folder" in reasons[2]
    other = tmp_path / "other"
    (other / "CASME2_RAW_selected").mkdir(parents=True)
    write_xlsx(other / MMEW_SHEET, MMEW_HEADER, [])
    with pytest.raises(CorpusLayoutError, match="no MMEW frame folders .*the folder has CASME2_RAW_selected, MMEW_Micro_Exp.xlsx"):
        read_mmew(other)


# --- CASME II: later revisions ----------------------------------------------------------------

def test_casme2_any_revision_objective_classes_and_question_mark(tmp_path):
    header = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion", "Objective Classes"]
    rows = [
        [1, "EP02_01f", None, 46, 59, 86, None, "1+2", "surprise", 2],
        [1, "EP03_02", None, 10, "/", 40, None, "?", "others", 7],
        [2, "EP01_11f", None, 5, 9, 20, None, 12, "happiness", "I"],
    ]
    for subject, clip, _, onset, _, offset, *_ in rows:
        frames(tmp_path / "CASME2_RAW_selected" / f"sub{subject:02d}" / clip, [f"img{n}.jpg" for n in range(onset, offset + 1)])
    write_xlsx(tmp_path / "CASME2-coding-20190701.xlsx", header, rows)
    listing = read_casme2(tmp_path)
    assert listing.sheet.name == "CASME2-coding-20190701.xlsx" and listing.rejections == []
    first, unsure, third = listing.samples
    assert first.objective_class == "II" and first.label("objective") == "II" and third.objective_class == "I"
    assert unsure.au_uncertain and unsure.au_labels == () and not unsure.has_au_coding
    assert (unsure.emotion, unsure.emotion_5class, unsure.apex_frame) == ("others", "others", None)
    assert "'/'" in unsure.apex_note
