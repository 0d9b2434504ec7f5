"""CASME II reader: the coding sheet and the frame folders, as they lie on disk.

Layouts (both 200 fps, the frame number in the file name is the one the sheet uses):
  raw      CASME2_RAW_selected/sub01/EP02_01f/img46.jpg
  cropped  Cropped/sub01/EP02_01f/reg_img46.jpg
Sheet: any released revision, `CASME2-coding-*.xlsx` or `.csv` (20140508, updated, later dated
ones; the newest name wins where several lie side by side), columns Subject, Filename,
OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion, plus unnamed empty columns
and, in later revisions, `Objective Classes` (kept). ApexFrame is '/' when unknown (the
pipeline estimates it); Action Units is '?' where the coders were unsure: the sample is kept
with no AU labels and `au_uncertain` set (its caption comes from the flow alone).

The record type and listing are shared by every corpus (`mertk.corpora.mer`); the names below
that older code imports (`MerSample`, `CorpusListing`, `Casme2Sample`, `Casme2LayoutError`)
stay importable from here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from mertk.corpora.casme2_layout import (  # noqa: F401 - the layout's names, re-exported for readers of this module
    FRAME_PREFIXES,
    LAYOUT_FOLDERS,
    LAYOUTS,
    REQUIRED_COLUMNS,
    SHEET_NAMES,
    SHEET_PATTERNS,
    frame_file_name,
    subject_folder_name,
)
from mertk.corpora.mer import (
    PROTOCOL_CASME2_5CLASS,
    PROTOCOL_MEGC2019,
    CorpusLayoutError,
    CorpusListing,
    MerSample,
    RowError,
    au_coding,
    check_apex,
    collect_rows,
    find_file,
    frame_number,
    frames_on_disk,
    normalise_emotion,
    objective_class,
    protocol_labels,
    read_sheet_table,
    require_folder,
    require_frames,
    safe_name,
)

DATASET = "casme2"
CORPUS = "CASME II"
FPS = 200.0
FRAME_PATTERNS = {name: re.compile(rf"^{prefix}(\d+)\.jpe?g$", re.I) for name, prefix in FRAME_PREFIXES.items()}
COLUMNS = {
    "Subject": ("Subject",),
    "Filename": ("Filename",),
    "OnsetFrame": ("OnsetFrame",),
    "ApexFrame": ("ApexFrame",),
    "OffsetFrame": ("OffsetFrame",),
    "Action Units": ("Action Units", "Action Unit", "AUs"),
    "Estimated Emotion": ("Estimated Emotion", "Emotion"),
    "Objective Classes": ("Objective Classes", "Objective Class"),
}

EMOTIONS = ("happiness", "disgust", "surprise", "repression", "fear", "sadness", "others")
EMOTION_ALIASES = {"other": "others", "happy": "happiness", "sad": "sadness"}
# 5-class protocol: fear and sadness are too rare in CASME II and are dropped.
EMOTION_5CLASS = {e: e for e in ("happiness", "disgust", "surprise", "repression", "others")}
# MEGC2019 composite: negative = disgust + repression (CASME II part), positive = happiness.
EMOTION_3CLASS = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}
PROTOCOL_MAPS = {PROTOCOL_CASME2_5CLASS: EMOTION_5CLASS, PROTOCOL_MEGC2019: EMOTION_3CLASS}

Layout = Literal["auto", "raw", "cropped"]
Casme2LayoutError = CorpusLayoutError  # the older name; every reader raises this one type
Casme2Sample = MerSample  # CASME II rows are plain MerSamples with dataset == "casme2"


def find_sheet(root: Path) -> Path:
    """The coding sheet in the corpus root (or one folder below it), whatever its revision date."""
    return find_file(root, SHEET_PATTERNS, CORPUS, "coding sheet")


def find_layout(root: Path, layout: Layout = "auto") -> tuple[str, Path]:
    """(layout name, frame folder). `auto` prefers the raw frames (whole face for the detector)."""
    if layout not in LAYOUTS:
        raise CorpusLayoutError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    names = ("raw", "cropped") if layout == "auto" else (layout,)
    for name in names:
        folder = root / LAYOUT_FOLDERS[name]
        if folder.is_dir():
            return name, folder
    wanted = " or ".join(LAYOUT_FOLDERS[n] for n in names)
    raise CorpusLayoutError(f"{root}: no frame folder {wanted} (not a {CORPUS} folder?)")


def _subject_folder(text: str) -> str:
    match = re.fullmatch(r"(?:sub)?(\d+)(?:\.0+)?", text, re.I)
    if not match:
        raise RowError(f"Subject {text!r} is not a subject number")
    return subject_folder_name(int(match.group(1)))


def _input_id(row) -> str:
    try:
        subject = _subject_folder(row["Subject"])
    except RowError:
        subject = row["Subject"] or "?"
    return f"{subject}/{row['Filename'] or '?'}"


def _au_text(text: str) -> str:
    # Excel may store a lone AU as a number: '4.0' -> '4'
    return re.sub(r"(\d+)\.0+\b", r"\1", text)


def _parse_row(row, source: str, root: Path, layout: str, frame_folder: Path) -> MerSample:
    subject = _subject_folder(row["Subject"])
    clip = safe_name(row["Filename"], "Filename", r"[A-Za-z0-9_\-]+")
    onset = frame_number(row["OnsetFrame"], "OnsetFrame")
    offset = frame_number(row["OffsetFrame"], "OffsetFrame")
    apex_text = row["ApexFrame"]
    apex = None if apex_text in ("/", "") else frame_number(apex_text, "ApexFrame")
    order = (onset, apex, offset) if apex is not None else (onset, offset)
    if list(order) != sorted(order) or onset == offset:
        raise RowError(f"frame order is wrong: onset {onset}, apex {apex_text or '/'}, offset {offset} (needs onset <= apex <= offset, onset < offset)")
    apex, apex_note = check_apex(onset, apex, offset, apex_text, "ApexFrame")
    emotion = normalise_emotion(row["Estimated Emotion"], EMOTION_ALIASES, EMOTIONS, "emotion")
    objective = objective_class(row["Objective Classes"])
    au_text = _au_text(row["Action Units"])
    coding = au_coding(au_text)
    episode_dir = frame_folder / subject / clip
    if not episode_dir.is_dir():
        raise RowError(f"frame folder {episode_dir.relative_to(root)} is missing")
    frames = frames_on_disk(episode_dir, FRAME_PATTERNS[layout])
    require_frames(frames, onset, apex, offset, lambda n: frame_file_name(n, layout), str(episode_dir.relative_to(root)))
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
    )


def read_casme2(root: Path | str, layout: Layout = "auto", sheet: Path | str | None = None) -> CorpusListing:
    """Read the coding sheet and index the frames of every row; bad rows become rejections.

    Raises CorpusLayoutError only when nothing can be read (no sheet, no frame folder, a sheet
    without the expected columns). A row is rejected (and the rest read on) when its subject or
    frame numbers do not parse, its frames are in the wrong order, its Filename would leave the
    corpus folder, its emotion or an AU token is unknown, its frame folder or its onset / apex /
    offset frame is missing, or it repeats an earlier row's sample. A '?' AU cell is kept.
    """
    root = require_folder(root, CORPUS)
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    layout_name, frame_folder = find_layout(root, layout)
    table = read_sheet_table(sheet_path, COLUMNS, REQUIRED_COLUMNS, CORPUS)
    samples, rejections = collect_rows(table, lambda row, source: _parse_row(row, source, root, layout_name, frame_folder), _input_id)
    return CorpusListing(root=root, layout=layout_name, sheet=sheet_path, samples=samples, rejections=rejections, dataset=DATASET)


__all__ = [
    "Casme2LayoutError",
    "Casme2Sample",
    "CorpusListing",
    "MerSample",
    "read_casme2",
    "find_sheet",
    "find_layout",
]
