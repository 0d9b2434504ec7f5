"""CASME II reader: layouts, sheet formats and quirks, and one broken-input twin per rejection."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mertk.corpora.casme2 import Casme2LayoutError, read_casme2

COLUMNS = ["Subject", "Filename", "Unnamed: 2", "OnsetFrame", "ApexFrame", "OffsetFrame", "Unnamed: 6", "Action Units", "Estimated Emotion"]


def _frame(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8), 128, np.uint8))


def make_corpus(root: Path, rows: list[dict], layout: str = "raw", sheet: str = "CASME2-coding-20140508.xlsx", frames: dict | None = None) -> Path:
    """Frames onset..offset for every row (or `frames[(subject, episode)]`), and the sheet."""
    folder, prefix = ("CASME2_RAW_selected", "img") if layout == "raw" else ("Cropped", "reg_img")
    for row in rows:
        subject = f"sub{int(float(row['Subject'])):02d}" if str(row["Subject"]).replace(".", "").isdigit() else str(row["Subject"])
        numbers = (frames or {}).get((subject, row["Filename"]))
        if numbers is None:
            try:
                numbers = range(int(row["OnsetFrame"]), int(row["OffsetFrame"]) + 1)
            except ValueError:
                numbers = range(1, 4)
        if "/" in str(row["Filename"]) or ".." in str(row["Filename"]):
            continue
        for n in numbers:
            _frame(root / folder / subject / str(row["Filename"]) / f"{prefix}{n}.jpg")
    table = pd.DataFrame([{c: row.get(c, "") for c in COLUMNS} for row in rows], columns=COLUMNS)
    table = table.rename(columns={"Unnamed: 2": "", "Unnamed: 6": " "})
    if sheet.endswith(".csv"):
        table.to_csv(root / sheet, index=False)
    else:
        table.to_excel(root / sheet, index=False)
    return root


def row(subject=1, filename="EP02_01f", onset=46, apex=59, offset=86, aus="4", emotion="others") -> dict:
    return {"Subject": subject, "Filename": filename, "OnsetFrame": onset, "ApexFrame": apex, "OffsetFrame": offset, "Action Units": aus, "Estimated Emotion": emotion}


def test_raw_layout_with_quirks(tmp_path):
    rows = [
        row(1, "EP02_01f", 46, 59, 56 + 30, "1+2", "surprise"),
        row(1, "EP03_02", 10, "/", 40, "L10+R12", "happiness"),
        row(2, "EP01_11f", 5, 9, 20, 12, "disgust"),  # a numeric AU cell
        row(3, "EP07_01", 30, 40, 50, " 4 + 7 + L10 ", "repression"),  # spaces
        row(4, "EP19_06f", 1, 2, 9, "R12", "fear"),
        row(5, "EP08_03", 1, 2, 9, "12+15", "sadness"),
    ]
    listing = read_casme2(make_corpus(tmp_path, rows))
    assert listing.layout == "raw" and listing.rejections == []
    samples = {s.sample_id: s for s in listing.samples}
    assert list(samples) == ["sub01/EP02_01f", "sub01/EP03_02", "sub02/EP01_11f", "sub03/EP07_01", "sub04/EP19_06f", "sub05/EP08_03"]
    first = samples["sub01/EP02_01f"]
    assert (first.onset_frame, first.apex_frame, first.offset_frame) == (46, 59, 86)
    assert [(a.au, a.side) for a in first.au_labels] == [(1, None), (2, None)]
    assert first.frame_path(46).name == "img46.jpg" and len(first.frames) == 41
    assert samples["sub01/EP03_02"].apex_frame is None
    assert [(a.au, a.side) for a in samples["sub01/EP03_02"].au_labels] == [(10, "L"), (12, "R")]
    assert [(a.au, a.side) for a in samples["sub02/EP01_11f"].au_labels] == [(12, None)]
    assert [(a.au, a.side) for a in samples["sub03/EP07_01"].au_labels] == [(4, None), (7, None), (10, "L")]
    # protocols
    assert (first.emotion_5class, first.emotion_3class) == ("surprise", "surprise")
    assert (samples["sub01/EP03_02"].emotion_5class, samples["sub01/EP03_02"].emotion_3class) == ("happiness", "positive")
    assert samples["sub03/EP07_01"].emotion_3class == "negative"
    assert (samples["sub04/EP19_06f"].emotion_5class, samples["sub04/EP19_06f"].emotion_3class) == (None, None)
    assert samples["sub05/EP08_03"].emotion_5class is None


def test_cropped_layout_and_csv_sheet(tmp_path):
    rows = [row(1, "EP02_01f", 46, 59, 60, "4", "Disgust")]
    listing = read_casme2(make_corpus(tmp_path, rows, layout="cropped", sheet="CASME2-coding-updated.csv"))
    assert listing.layout == "cropped" and listing.sheet.name == "CASME2-coding-updated.csv"
    (sample,) = listing.samples
    assert sample.frame_path(59).name == "reg_img59.jpg"
    assert sample.emotion == "disgust"  # capitalised in the sheet


def test_layout_choice_when_both_exist(tmp_path):
    rows = [row()]
    make_corpus(tmp_path, rows, layout="cropped")
    make_corpus(tmp_path, rows, layout="raw")
    assert read_casme2(tmp_path).layout == "raw"
    assert read_casme2(tmp_path, layout="cropped").samples[0].frame_path(46).name == "reg_img46.jpg"
    with pytest.raises(Casme2LayoutError, match="unknown layout 'flat'"):
        read_casme2(tmp_path, layout="flat")


def _reasons(listing) -> dict[str, str]:
    return {r.input: r.reason for r in listing.rejections}


@pytest.mark.parametrize(
    "bad, expected",
    [
        (row(2, "EP01_01", 30, 20, 40), "frame order is wrong"),
        (row(2, "EP01_01", 30, 35, 30), "frame order is wrong"),
        (row(2, "EP01_01", aus="4+X7"), "not an Action Unit: 'X7'"),
        (row(2, "EP01_01", emotion="boredom"), "unknown emotion 'boredom'"),
        (row(2, "../../etc", 1, 2, 3), "would leave the corpus folder"),
        (row(2, "EP01_01", onset="abc"), "OnsetFrame 'abc' is not a frame number"),
        (row("x", "EP01_01"), "Subject 'x' is not a subject number"),
    ],
)
def test_bad_rows_are_rejected_with_reason(tmp_path, bad, expected):
    listing = read_casme2(make_corpus(tmp_path, [row(), bad]))
    assert [s.sample_id for s in listing.samples] == ["sub01/EP02_01f"]
    (rejection,) = listing.rejections
    assert expected in rejection.reason
    assert rejection.reason.startswith("CASME2-coding-20140508.xlsx row 3: ")  # names sheet and row


def test_missing_frames_are_rejected(tmp_path):
    rows = [row(1, "EP01", 10, 15, 20), row(1, "EP02", 10, 15, 20), row(1, "EP03", 10, 15, 20)]
    frames = {("sub01", "EP02"): [10, 11, 12, 20], ("sub01", "EP03"): [10, 15]}  # EP02 lacks apex, EP03 offset
    listing = read_casme2(make_corpus(tmp_path, rows, frames=frames))
    reasons = _reasons(listing)
    assert "apex frame img15.jpg missing in CASME2_RAW_selected/sub01/EP02" in reasons["sub01/EP02"]
    assert "offset frame img20.jpg missing" in reasons["sub01/EP03"]
    assert [s.sample_id for s in listing.samples] == ["sub01/EP01"]


def test_missing_folder_and_duplicate_rows(tmp_path):
    make_corpus(tmp_path, [row(1, "EP01", 1, 2, 3)])
    sheet = pd.DataFrame([row(1, "EP01", 1, 2, 3), row(1, "EP01", 1, 2, 3), row(7, "EP09", 1, 2, 3)])
    sheet.to_excel(tmp_path / "CASME2-coding-20140508.xlsx", index=False)
    reasons = _reasons(read_casme2(tmp_path))
    assert "repeats sample sub01/EP01" in reasons["sub01/EP01"]
    assert "frame folder CASME2_RAW_selected/sub07/EP09 is missing" in reasons["sub07/EP09"]


def test_unusable_corpus_raises_clear_errors(tmp_path):
    with pytest.raises(Casme2LayoutError, match="no such corpus folder"):
        read_casme2(tmp_path / "absent")
    (tmp_path / "CASME2_RAW_selected").mkdir()
    with pytest.raises(Casme2LayoutError, match="no CASME II coding sheet"):
        read_casme2(tmp_path)
    pd.DataFrame({"Subject": [1], "Filename": ["EP01"]}).to_excel(tmp_path / "CASME2-coding-20140508.xlsx", index=False)
    with pytest.raises(Casme2LayoutError, match="lacks column\\(s\\) OnsetFrame"):
        read_casme2(tmp_path)
    (tmp_path / "CASME2-coding-20140508.xlsx").write_bytes(b"not a workbook")
    with pytest.raises(Casme2LayoutError, match="not a readable coding sheet"):
        read_casme2(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame([row()]).to_excel(other / "CASME2-coding-20140508.xlsx", index=False)
    with pytest.raises(Casme2LayoutError, match="no frame folder"):
        read_casme2(other)
