"""CASME II's names on disk: the one home of the file and folder names that the reader
(`mertk.corpora.casme2`) looks for and the sample-corpus writer (`mertk.sample_data.casme2`)
writes. Plain values only, so that the command line can offer them without loading the reader.

  raw      CASME2_RAW_selected/sub01/EP02_01f/img46.jpg
  cropped  Cropped/sub01/EP02_01f/reg_img46.jpg
"""
from __future__ import annotations

SHEET_NAMES = (
    "CASME2-coding-20140508.xlsx",
    "CASME2-coding-updated.xlsx",
    "CASME2-coding-20140508.csv",
    "CASME2-coding-updated.csv",
)
# The reader takes any released revision of the sheet, whatever its date (SHEET_NAMES are examples;
# the sample writer writes the first).
SHEET_PATTERNS = ("CASME2-coding-*.xlsx", "CASME2-coding-*.csv")
LAYOUT_FOLDERS = {"raw": "CASME2_RAW_selected", "cropped": "Cropped"}
LAYOUTS = ("auto", *LAYOUT_FOLDERS)  # auto: raw where present, else cropped
FRAME_PREFIXES = {"raw": "img", "cropped": "reg_img"}
REQUIRED_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")


def subject_folder_name(subject: int) -> str:
    """The frame folder of subject 1: `sub01`."""
    return f"sub{subject:02d}"


def frame_file_name(number: int, layout: str = "raw") -> str:
    """The file of frame `number`: `img46.jpg` (raw), `reg_img46.jpg` (cropped)."""
    return f"{FRAME_PREFIXES[layout]}{number}.jpg"
