"""MMEW reader: the micro-expression sheet and the clip folders, filed by emotion.

Layout (90 fps):
  MMEW_Micro_Exp.xlsx
  Micro_Expression/happiness/S01_happiness_01/12.jpg   (or <emotion>/<clip>/ directly in the root)
Columns as CASME II's: Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units,
Estimated Emotion. Quirks handled: side letters before or after the AU number (`L14`, `12L`,
`4R+7`), subjects as numbers or `S01`, emotions in any case. A clip is looked up under its
sheet emotion's folder; a clip filed under another emotion is rejected with both names.
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
    optional_frame_number,
    protocol_labels,
    read_sheet_table,
    require_folder,
    require_frames,
    safe_name,
)

DATASET = "mmew"
CORPUS = "MMEW"
FPS = 90.0
SHEET_NAME = "MMEW_Micro_Exp.xlsx"
SHEET_PATTERNS = ("MMEW_Micro_Exp*.xlsx", "MMEW_Micro_Exp*.csv")
FRAMES_FOLDER = "Micro_Expression"
FRAME_PATTERN = re.compile(r"^(\d+)\.jpe?g$", re.I)
COLUMNS = {
    "Subject": ("Subject",),
    "Filename": ("Filename",),
    "OnsetFrame": ("OnsetFrame",),
    "ApexFrame": ("ApexFrame",),
    "OffsetFrame": ("OffsetFrame",),
    "Action Units": ("Action Units", "AU", "AUs"),
    "Estimated Emotion": ("Estimated Emotion", "Emotion"),
}
REQUIRED_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")
EMOTIONS = ("happiness", "surprise", "anger", "disgust", "fear", "sadness", "others")
EMOTION_ALIASES = {"other": "others", "happy": "happiness", "sad": "sadness", "angry": "anger"}
EMOTION_3CLASS = {"anger": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative", "happiness": "positive", "surprise": "surprise"}
# MMEW's own 4-class protocol (the classes with enough samples).
PROTOCOL_MMEW_4CLASS = "mmew-4class"
EMOTION_4CLASS = {e: e for e in ("happiness", "surprise", "disgust", "others")}
PROTOCOL_MAPS = {PROTOCOL_MMEW_4CLASS: EMOTION_4CLASS, PROTOCOL_MEGC2019: EMOTION_3CLASS}


def subject_name(text: str) -> str:
    """'1', 1.0, 'S01', 's1' -> 'S01'."""
    match = re.fullmatch(r"[Ss]?0*(\d+)(?:\.0+)?", text.strip())
    if not match:
        raise RowError(f"Subject {text!r} is not a subject number")
    return f"S{int(match.group(1)):02d}"


def find_frames_folder(root: Path) -> Path:
    """Micro_Expression/ under the root, or the root itself when it holds the emotion folders."""
    for candidate in (root / FRAMES_FOLDER, root):
        if candidate.is_dir() and any(p.is_dir() and p.name.lower() in {*EMOTIONS, *EMOTION_ALIASES} for p in candidate.iterdir()):
            return candidate
    raise CorpusLayoutError(
        f"{root}: no MMEW frame folders (expected {FRAMES_FOLDER}/<emotion>/<clip>/<frame>.jpg with emotion one of {', '.join(EMOTIONS)}); "
        f"the folder {describe_folder(root)}"
    )


def _emotion_folders(frames_folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in frames_folder.iterdir() if p.is_dir()}


def _input_id(row) -> str:
    return f"{row['Subject'] or '?'}/{row['Filename'] or '?'}"


def _parse_row(row, source: str, root: Path, frames_folder: Path, emotion_folders: dict[str, Path]) -> MerSample:
    subject = subject_name(row["Subject"])
    clip = safe_name(row["Filename"], "Filename", r"[A-Za-z0-9_\-]+")
    onset = frame_number(row["OnsetFrame"], "OnsetFrame")
    offset = frame_number(row["OffsetFrame"], "OffsetFrame")
    if offset <= onset:
        raise RowError(f"offset {offset} is not after onset {onset}: the clip has no extent to read")
    apex_text = row["ApexFrame"]
    apex, apex_note = check_apex(onset, optional_frame_number(apex_text, "ApexFrame"), offset, apex_text, "ApexFrame")
    emotion = normalise_emotion(row["Estimated Emotion"], EMOTION_ALIASES, EMOTIONS, "Estimated Emotion")
    au_text = row["Action Units"].strip()
    coding = au_coding(au_text)
    spellings = [emotion] + [alias for alias, target in EMOTION_ALIASES.items() if target == emotion]
    folder = next((emotion_folders[s] / clip for s in spellings if s in emotion_folders and (emotion_folders[s] / clip).is_dir()), None)
    if folder is None:
        elsewhere = [name for name, path in sorted(emotion_folders.items()) if (path / clip).is_dir()]
        where = f"; it lies under {', '.join(elsewhere)}" if elsewhere else ""
        raise RowError(f"frame folder {FRAMES_FOLDER if frames_folder != root else '.'}/{emotion}/{clip} is missing{where}")
    label = str(folder.relative_to(root))
    frames = tuple((n, p) for n, p in frames_on_disk(folder, FRAME_PATTERN) if onset <= n <= offset)
    require_frames(frames, onset, apex, offset, lambda n: f"{n}.jpg", label)
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
        protocol_labels=protocol_labels(emotion, PROTOCOL_MAPS),
    )


def read_mmew(root: Path | str, sheet: Path | str | None = None) -> CorpusListing:
    """Read the MMEW micro-expression sheet and index each row's frames; bad rows become rejections.

    Raises CorpusLayoutError when nothing can be read: no folder, no sheet, no emotion folders,
    or a sheet without the MMEW columns.
    """
    root = require_folder(root, CORPUS)
    sheet_path = Path(sheet) if sheet is not None else find_file(root, SHEET_PATTERNS, CORPUS, "micro-expression sheet")
    frames_folder = find_frames_folder(root)
    emotion_folders = _emotion_folders(frames_folder)
    table = read_sheet_table(sheet_path, COLUMNS, REQUIRED_COLUMNS, CORPUS)
    samples, rejections = collect_rows(table, lambda row, source: _parse_row(row, source, root, frames_folder, emotion_folders), _input_id)
    return CorpusListing(root=root, layout="micro", sheet=sheet_path, samples=samples, rejections=rejections, dataset=DATASET)
