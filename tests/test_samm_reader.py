"""SAMM reader on files in the real layout: every sheet quirk, and a broken-input twin."""
from __future__ import annotations

from pathlib import Path

import pytest
from mer_sheets import frames, write_xlsx

from mertk.au.notation import AuLabel
from mertk.corpora.mer import CorpusLayoutError
from mertk.corpora.samm import SHEET_NAME, read_samm

HEADER = [
    "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration", "Type",
    "Action Units", "Estimated Emotion", "Objective Classes", "Notes",
]
PREAMBLE = [
    ["SAMM: Spontaneous Actions and Micro-Movements"],
    ["Micro-movements, FACS coded"],
    [],
    ["Notes: intensity letters A-E follow the AU number; 'or' marks an alternative."],
    ["Contact the dataset owners for the licence."],
    [],
]


def samm_row(subject: object, clip: str, onset, apex, offset, aus, emotion, objective=1, sheet_row: int = 0) -> list:
    """One data row; Duration is a formula cell as in the release."""
    duration = f"=F{sheet_row}-D{sheet_row}+1" if sheet_row else None
    return [subject, clip, 1, onset, apex, offset, duration, "Micro - 1/2", aus, emotion, objective, None]


def make_samm(root: Path, rows: list[list], frames_for: dict | None = None, preamble=PREAMBLE) -> Path:
    first = len(preamble) + 2
    for index, row in enumerate(rows):
        row[6] = f"=F{first + index}-D{first + index}+1"
        subject, clip, onset, offset = row[0], row[1], row[3], row[5]
        folder_subject = f"{int(subject):03d}" if str(subject).isdigit() else str(subject)
        numbers = (frames_for or {}).get(clip)
        if numbers is None:
            try:
                numbers = range(int(onset), int(offset) + 1)
            except (TypeError, ValueError):
                numbers = range(1, 4)
        if "/" not in str(clip):
            frames(root / "SAMM" / folder_subject / str(clip), [f"{folder_subject}_{n}.jpg" for n in numbers])
    write_xlsx(root / SHEET_NAME, HEADER, rows, preamble=preamble, other_sheets=["Read me"], title="MICRO_ONLY")
    return root


def test_sheet_quirks(tmp_path):
    rows = [
        samm_row("006", "006_1_2", 5562, 5588, 5613, "12A", "Happiness"),
        samm_row("006", "006_1_3", 100, 150, 130, "A14C", "Contempt", 7),  # apex after offset
        samm_row("007", "007_3_1", 200, 190, 240, "(R6 or R12)+R15", "Other", 7),  # apex before onset
        samm_row(9, "009_2_1", 10, "-1", 40, "L12 or L14 ", "Anger", 3),  # numeric subject, no apex
        samm_row("011", "011_1_1", 10, 20, 40, "ref(7B)+43", "Anger", 3),
        samm_row("011", "011_1_2", 10, 20, 40, "10A/B", "Disgust", 4),
        samm_row("011", "011_1_3", 10, 20, 40, "A/L12", "Surprise", 2),
    ]
    listing = read_samm(make_samm(tmp_path, rows))
    assert listing.rejections == []
    samples = {s.sample_id: s for s in listing.samples}
    assert list(samples) == ["006_1_2", "006_1_3", "007_3_1", "009_2_1", "011_1_1", "011_1_2", "011_1_3"]
    first = samples["006_1_2"]
    assert (first.dataset, first.subject, first.qualified_id, first.fps) == ("samm", "006", "samm/006_1_2", 200.0)
    assert (first.onset_frame, first.apex_frame, first.offset_frame) == (5562, 5588, 5613)
    assert first.frame_path(5562).name == "006_5562.jpg" and len(first.frames) == 52
    assert first.au_labels == (AuLabel(12, None, "A"),)
    assert (first.emotion, first.emotion_3class, first.label("samm-5class"), first.objective_class) == ("happiness", "positive", "happiness", "I")
    # apex outside onset..offset, before onset, or -1: left to the motion curve and flagged, never dropped
    assert samples["006_1_3"].apex_frame is None and "after offset 130" in samples["006_1_3"].apex_note
    assert samples["007_3_1"].apex_frame is None and "before onset 200" in samples["007_3_1"].apex_note
    assert samples["009_2_1"].apex_frame is None and samples["009_2_1"].subject == "009"
    # alternatives kept as such
    other = samples["007_3_1"]
    assert other.au_labels == (AuLabel(15, "R"),)
    assert other.au_alternatives == (((AuLabel(6, "R"),), (AuLabel(12, "R"),)),)
    assert (other.emotion, other.emotion_3class, other.label("samm-5class"), other.objective_class) == ("other", None, "other", "VII")
    assert samples["009_2_1"].au_alternatives == (((AuLabel(12, "L"),), (AuLabel(14, "L"),)),)
    assert samples["009_2_1"].au_labels == () and samples["009_2_1"].has_au_coding
    assert [str(l) for l in samples["011_1_1"].au_labels] == ["ref(7B)", "43"]
    assert samples["011_1_2"].au_labels == (AuLabel(10, None, "A/B"),)
    assert samples["011_1_3"].au_alternatives == (((AuLabel(12, None, None, "A"),), (AuLabel(12, "L"),)),)
    assert samples["006_1_3"].emotion_3class == "negative" and samples["011_1_3"].emotion_3class == "surprise"


def test_header_found_without_preamble_and_zero_padded_frames(tmp_path):
    rows = [samm_row("020", "020_1_1", 10, 12, 20, "4", "Fear")]
    make_samm(tmp_path, rows, preamble=(), frames_for={"020_1_1": []})
    frames(tmp_path / "SAMM" / "020" / "020_1_1", [f"020_{n:05d}.jpg" for n in range(10, 21)])
    (sample,) = read_samm(tmp_path).samples
    assert sample.frame_path(12).name == "020_00012.jpg"


def _reasons(listing) -> dict[str, str]:
    return {r.input: r.reason for r in listing.rejections}


def test_broken_rows_are_rejected_with_sheet_and_row(tmp_path):
    rows = [
        samm_row("006", "006_1_2", 10, 12, 20, "12A", "Happiness"),
        samm_row("006", "006_1_4", "abc", 12, 20, "4", "Anger"),
        samm_row("006", "006_1_5", 10, 12, 20, "4", "Boredom"),
        samm_row("006", "006_1_6", 10, 12, 20, "4+X7", "Anger"),
        samm_row("006", "006_1_7", 20, 12, 10, "4", "Anger"),
        samm_row("006", "006_1_2", 10, 12, 20, "12A", "Happiness"),
        samm_row("006", "006_1_8", 10, 12, 20, "4", "Anger"),
        samm_row("006", "006_1_9", 10, 12, 20, "4", "Anger"),
    ]
    make_samm(tmp_path, rows, frames_for={"006_1_9": [10, 11, 20]})
    import shutil

    shutil.rmtree(tmp_path / "SAMM" / "006" / "006_1_8")
    listing = read_samm(tmp_path)
    assert [s.sample_id for s in listing.samples] == ["006_1_2"]
    reasons = _reasons(listing)
    header_row = len(PREAMBLE) + 1
    assert reasons["006_1_4"].startswith(f"{SHEET_NAME} row {header_row + 2}: Onset Frame 'abc' is not a frame number")
    assert "unknown Estimated Emotion 'Boredom'" in reasons["006_1_5"]
    assert "not an Action Unit: 'X7'" in reasons["006_1_6"]
    assert "offset 10 is not after onset 20" in reasons["006_1_7"]
    assert f"row {header_row + 6}: repeats sample 006_1_2" in reasons["006_1_2"]
    assert "frame folder SAMM/006/006_1_8 is missing" in reasons["006_1_8"]
    assert "apex frame 006_12.jpg missing in SAMM/006/006_1_9" in reasons["006_1_9"]
    assert len(listing.samples) + len(listing.rejections) == len(rows)


def test_not_a_samm_folder_or_sheet(tmp_path):
    with pytest.raises(CorpusLayoutError, match="no such corpus folder \\(SAMM expected\\)"):
        read_samm(tmp_path / "absent")
    casme2 = tmp_path / "casme2"
    (casme2 / "CASME2_RAW_selected").mkdir(parents=True)
    (casme2 / "CASME2-coding-20140508.xlsx").write_bytes(b"")
    with pytest.raises(CorpusLayoutError, match="no SAMM coding sheet found .*SAMM_Micro_FACS_Codes.*the folder has CASME2-coding-20140508.xlsx, CASME2_RAW_selected"):
        read_samm(casme2)
    wrong = tmp_path / "wrong"
    make_samm(wrong, [samm_row("006", "006_1_2", 10, 12, 20, "4", "Anger")])
    write_xlsx(wrong / SHEET_NAME, ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"], [[1, "EP01", 1, 2, 3, "4", "others"]])
    with pytest.raises(CorpusLayoutError, match="not a SAMM coding sheet: .*lacks column\\(s\\) Onset Frame, Apex Frame, Offset Frame"):
        read_samm(wrong)
    no_frames = tmp_path / "no_frames"
    no_frames.mkdir()
    write_xlsx(no_frames / SHEET_NAME, HEADER, [])
    with pytest.raises(CorpusLayoutError, match="no SAMM frame folder"):
        read_samm(no_frames)
