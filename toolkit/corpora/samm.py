"""SAMM reader: the micro-movement coding sheet and the frame folders, as released.

Layout (2040x1088 grey, 200 fps; the number after the subject is the sheet's frame number):
  SAMM/006/006_1_2/006_5562.jpg          (zero-padded numbers, 006_05562.jpg, read the same)
  SAMM_Micro_FACS_Codes_v2.xlsx          (beside the SAMM folder, or inside it)
The frame folder may also be the corpus root itself (subject folders 006, 007, ... directly in it).

Sheet quirks handled: the header row comes after a block of title and notes rows (it is found,
not assumed); the workbook may hold other worksheets (the one with the micro-movement columns is
used); `Duration` may be a formula cell (never read); subjects are text (`006`) or numbers (6);
AU cells in SAMM's dialect (intensity letters `12A`, `A14C`, `10A/B`, `ref(7B)+43`, alternatives
`(R6 or R12)+R15`, `A/L12`, `L12 or L14`, trailing spaces; see `mertk.au.notation`), with each
alternative kept as such; Title-case emotions. An apex outside onset..offset (or missing, 0,
-1) is left to the motion curve and flagged (`apex_note`), never dropped or corrected by a table.
"""
from __future__ import annotations

import re
from pathlib import Path

from mertk.corpora.mer import (
    PROTOCOL_MEGC2019,
    CorpusLayoutError,
    CorpusListing,
    MerSample,
    RowError,
    au_coding,
    check_apex,
    collect_rows,
    describe_folder,
    find_file,
    frame_number,
    frames_on_disk,
    normalise_emotion,
    objective_class,
    optional_frame_number,
    protocol_labels,
    read_sheet_table,
    require_folder,
    require_frames,
    safe_name,
)

DATASET = "samm"
CORPUS = "SAMM"
FPS = 200.0
SHEET_NAME = "SAMM_Micro_FACS_Codes_v2.xlsx"
SHEET_PATTERNS = ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.csv")
FRAMES_FOLDER = "SAMM"
FRAME_PATTERN = re.compile(r"^\d+_(\d+)\.(?:jpe?g|png|bmp)$", re.I)
# Canonical column -> header spellings (the v2 sheet's first).
COLUMNS = {
    "Subject": ("Subject",),
    "Filename": ("Filename",),
    "Inducement Code": ("Inducement Code",),
    "Onset Frame": ("Onset Frame", "Onset"),
    "Apex Frame": ("Apex Frame", "Apex"),
    "Offset Frame": ("Offset Frame", "Offset"),
    "Duration": ("Duration",),
    "Type": ("Type",),
    "Action Units": ("Action Units", "Action Unit", "AUs"),
    "Estimated Emotion": ("Estimated Emotion", "Emotion"),
    "Objective Classes": ("Objective Classes", "Objective Class", "Classes"),
    "Notes": ("Notes",),
}
REQUIRED_COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units", "Estimated Emotion")
# The sheet writes them Title-case; stored lower case.
EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "other", "sadness", "surprise")
EMOTION_ALIASES = {"others": "other", "happy": "happiness", "sad": "sadness", "angry": "anger"}
# SAMM's 5-class protocol (the classes with enough samples).
PROTOCOL_SAMM_5CLASS = "samm-5class"
EMOTION_5CLASS = {e: e for e in ("anger", "contempt", "happiness", "surprise", "other")}
# MEGC2019 composite: every negative emotion of SAMM is negative.
EMOTION_3CLASS = {
    "anger": "negative",
    "contempt": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "happiness": "positive",
    "surprise": "surprise",
}
PROTOCOL_MAPS = {PROTOCOL_SAMM_5CLASS: EMOTION_5CLASS, PROTOCOL_MEGC2019: EMOTION_3CLASS}
APEX_MISSING = ("", "/", "-", "-1")


def subject_folder(text: str) -> str:
    """'006', '6', 6.0 -> '006' (the folder name)."""
    match = re.fullmatch(r"0*(\d+)(?:\.0+)?", text.strip())
    if not match:
        raise RowError(f"Subject {text!r} is not a subject number")
    return f"{int(match.group(1)):03d}"


def frame_file_name(subject: str, number: int) -> str:
    return f"{subject}_{number}.jpg"


def find_frames_folder(root: Path) -> Path:
    """SAMM/ under the root, or the root itself when it holds the subject folders."""
    if (root / FRAMES_FOLDER).is_dir():
        return root / FRAMES_FOLDER
    if any(p.is_dir() and re.fullmatch(r"\d{3}", p.name) for p in root.iterdir()):
        return root
    raise CorpusLayoutError(f"{root}: no SAMM frame folder (expected {FRAMES_FOLDER}/<subject>/<subject>_<n>_<m>/<subject>_<frame>.jpg); the folder {describe_folder(root)}")


def _input_id(row) -> str:
    return row["Filename"] or f"{row['Subject'] or '?'}/?"


def _parse_row(row, source: str, root: Path, frames_folder: Path) -> MerSample:
    subject = subject_folder(row["Subject"])
    clip = safe_name(row["Filename"], "Filename", r"[A-Za-z0-9_\-]+")
    onset = frame_number(row["Onset Frame"], "Onset Frame")
    offset = frame_number(row["Offset Frame"], "Offset Frame")
    if offset <= onset:
        raise RowError(f"offset {offset} is not after onset {onset}: the clip has no extent to read")
    apex_text = row["Apex Frame"]
    apex = optional_frame_number(apex_text, "Apex Frame", APEX_MISSING)
    apex, apex_note = check_apex(onset, apex, offset, apex_text, "Apex Frame")
    emotion = normalise_emotion(row["Estimated Emotion"], EMOTION_ALIASES, EMOTIONS, "Estimated Emotion")
    objective = objective_class(row["Objective Classes"])
    au_text = row["Action Units"].strip()
    coding = au_coding(au_text)
    folder = frames_folder / subject / clip
    label = str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
    if not folder.is_dir():
        raise RowError(f"frame folder {label} is missing")
    frames = tuple((n, p) for n, p in frames_on_disk(folder, FRAME_PATTERN) if onset <= n <= offset)
    require_frames(frames, onset, apex, offset, lambda n: frame_file_name(subject, n), label)
    return MerSample(
        dataset=DATASET,
        subject=subject,
        clip=clip,
        onset_frame=onset,
        apex_frame=apex,
        offset_frame=offset,
        au_labels=coding.labels,
        au_text=au_text,
        emotion=emotion,
        frames=frames,
        fps=FPS,
        source=source,
        au_alternatives=coding.alternatives,
        au_uncertain=coding.uncertain,
        apex_note=apex_note,
        objective_class=objective,
        protocol_labels=protocol_labels(emotion, PROTOCOL_MAPS, objective),
        local_id=clip,  # SAMM clip names already start with the subject: '006_1_2'
    )


def read_samm(root: Path | str, sheet: Path | str | None = None) -> CorpusListing:
    """Read the SAMM sheet and index each row's frames (onset..offset); bad rows become rejections.

    Raises CorpusLayoutError when nothing can be read: no folder, no sheet, no frame folder, or a
    sheet with no worksheet holding the SAMM columns (the message names the columns expected).
    """
    root = require_folder(root, CORPUS)
    sheet_path = Path(sheet) if sheet is not None else find_file(root, SHEET_PATTERNS, CORPUS, "coding sheet")
    frames_folder = find_frames_folder(root)
    table = read_sheet_table(sheet_path, COLUMNS, REQUIRED_COLUMNS, CORPUS)
    samples, rejections = collect_rows(table, lambda row, source: _parse_row(row, source, root, frames_folder), _input_id)
    return CorpusListing(root=root, layout="raw", sheet=sheet_path, samples=samples, rejections=rejections, dataset=DATASET)
