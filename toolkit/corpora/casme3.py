"""CAS(ME)^3 part A reader: the micro-expression sheet and the recordings' colour frames.

Layout (30 fps; one folder per recording, several micro-expressions per recording):
  cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx       (onset / apex / offset are jpg numbers)
  spNO.1/a/color/116.jpg                           (also under part_A/ or data/part_A/)
Columns: Subject (`spNO.1`), Filename (the recording, `a`), Onset, Apex, Offset, AU,
Objective class, emotion.

Sheet quirks handled: every cell is stored as text ('116'); emotions in mixed case and short
forms (`Others`/`others`, `sad`, `happy`); AU codes with top / bottom prefixes (`T28+14`,
`B23`). Rows whose apex is before the onset, or 0, keep their sample with the apex left to the
motion curve (`apex_note`); a row whose offset is 0 keeps its sample with the offset bounded at
onset + 0.5 s (the longest micro-expression) or the recording's last frame, flagged
`offset_estimated`; a row with no usable onset, or whose offset precedes its onset, cannot be
recovered and is rejected with the reason.

A sample is named after its recording and onset, as the corpus' own ME clip release names
them: subject `spNO.1`, clip `a_116`.
"""
from __future__ import annotations

import re
from pathlib import Path

from mertk.corpora.mer import (
    MAX_MICRO_EXPRESSION_S,
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

DATASET = "casme3"
CORPUS = "CAS(ME)^3 part A"
FPS = 30.0
SHEET_NAME = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
SHEET_PATTERNS = ("cas(me)3_part_A_ME_label*.xlsx", "cas(me)3_part_A_ME_label*.csv")
FRAME_SUBFOLDER = "color"
FRAME_PATTERN = re.compile(r"^(\d+)\.jpe?g$", re.I)
FRAME_ROOTS = (".", "part_A", "data/part_A")
COLUMNS = {
    "Subject": ("Subject",),
    "Filename": ("Filename",),
    "Onset": ("Onset",),
    "Apex": ("Apex",),
    "Offset": ("Offset",),
    "AU": ("AU", "AUs"),
    "Objective class": ("Objective class", "Objective classes"),
    "emotion": ("emotion",),
}
REQUIRED_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise", "others")
EMOTION_ALIASES = {"other": "others", "happiness": "happy", "sadness": "sad", "angry": "anger", "surprised": "surprise", "disgusted": "disgust"}
NEGATIVE = ("anger", "disgust", "fear", "sad")
EMOTION_7CLASS = {e: e for e in EMOTIONS}
EMOTION_4CLASS = {**{e: "negative" for e in NEGATIVE}, "happy": "positive", "surprise": "surprise", "others": "others"}
EMOTION_3CLASS = {**{e: "negative" for e in NEGATIVE}, "happy": "positive", "surprise": "surprise"}
PROTOCOL_MAPS = {
    "casme3-7class": EMOTION_7CLASS,
    "casme3-4class": EMOTION_4CLASS,
    "casme3-3class": EMOTION_3CLASS,
    PROTOCOL_MEGC2019: EMOTION_3CLASS,  # the field's 3 classes, for cross-corpus use
}


def find_frames_root(root: Path) -> Path:
    """The folder holding <subject>/<recording>/color/: the root, part_A/ or data/part_A/."""
    for relative in FRAME_ROOTS:
        candidate = root / relative
        if candidate.is_dir() and any(p.is_dir() and any((r / FRAME_SUBFOLDER).is_dir() for r in p.iterdir() if r.is_dir()) for p in candidate.iterdir() if p.is_dir()):
            return candidate
    raise CorpusLayoutError(
        f"{root}: no CAS(ME)^3 frame folders (expected <subject>/<recording>/{FRAME_SUBFOLDER}/<frame>.jpg under the root, part_A/ or data/part_A/); "
        f"the folder {describe_folder(root)}"
    )


class _RecordingFrames:
    """Frames of each recording folder, listed once however many rows point into it."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, str], ...]] = {}

    def __call__(self, folder: Path) -> tuple[tuple[int, str], ...]:
        if folder not in self._cache:
            self._cache[folder] = frames_on_disk(folder, FRAME_PATTERN)
        return self._cache[folder]


def _input_id(row) -> str:
    return f"{row['Subject'] or '?'}/{row['Filename'] or '?'}_{row['Onset'] or '?'}"


def _parse_row(row, source: str, root: Path, frames_root: Path, listing: _RecordingFrames) -> MerSample:
    subject = safe_name(row["Subject"], "Subject")
    recording = safe_name(row["Filename"], "Filename")
    onset = optional_frame_number(row["Onset"], "Onset")
    if onset is None:
        raise RowError(f"Onset {row['Onset']!r}: no start frame, nothing to recover the clip from")
    offset_sheet = optional_frame_number(row["Offset"], "Offset")
    if offset_sheet is not None and offset_sheet <= onset:
        raise RowError(f"offset {offset_sheet} is not after onset {onset}: the clip has no extent to read")
    apex_sheet = optional_frame_number(row["Apex"], "Apex")
    emotion = normalise_emotion(row["emotion"], EMOTION_ALIASES, EMOTIONS, "emotion")
    objective = objective_class(row["Objective class"])
    au_text = row["AU"].strip()
    coding = au_coding(au_text, "AU")
    folder = frames_root / subject / recording / FRAME_SUBFOLDER
    label = str(folder.relative_to(root))
    if not folder.is_dir():
        raise RowError(f"frame folder {label} is missing")
    recording_frames = listing(folder)
    if not recording_frames:
        raise RowError(f"no <frame>.jpg in {label}")
    offset_estimated, offset_note = False, ""
    offset = offset_sheet
    if offset is None:
        last = recording_frames[-1][0]
        bound = onset + round(MAX_MICRO_EXPRESSION_S * FPS)
        if apex_sheet is not None and apex_sheet >= bound:
            bound = apex_sheet + 1
        offset = min(bound, last)
        if offset <= onset:
            raise RowError(f"Offset {row['Offset']!r} and onset {onset} is the recording's last frame: nothing to recover the clip from")
        offset_estimated = True
        offset_note = f"Offset {row['Offset']!r} in the sheet: clip bounded at frame {offset} (onset + {MAX_MICRO_EXPRESSION_S:g} s or the recording's end)"
    apex, apex_note = check_apex(onset, apex_sheet, offset, row["Apex"], "Apex")
    frames = tuple((n, p) for n, p in recording_frames if onset <= n <= offset)
    require_frames(frames, onset, apex, offset, lambda n: f"{n}.jpg", label)
    return MerSample(
        dataset=DATASET,
        subject=subject,
        clip=f"{recording}_{onset}",
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
        offset_estimated=offset_estimated,
        offset_note=offset_note,
        objective_class=objective,
        protocol_labels=protocol_labels(emotion, PROTOCOL_MAPS, objective),
    )


def read_casme3(root: Path | str, sheet: Path | str | None = None) -> CorpusListing:
    """Read the part A micro-expression sheet and index each row's frames; bad rows become rejections.

    Raises CorpusLayoutError when nothing can be read: no folder, no sheet, no frame folders, or
    a sheet without the CAS(ME)^3 columns.
    """
    root = require_folder(root, CORPUS)
    sheet_path = Path(sheet) if sheet is not None else find_file(root, SHEET_PATTERNS, CORPUS, "micro-expression sheet")
    frames_root = find_frames_root(root)
    table = read_sheet_table(sheet_path, COLUMNS, REQUIRED_COLUMNS, CORPUS)
    listing = _RecordingFrames()
    samples, rejections = collect_rows(table, lambda row, source: _parse_row(row, source, root, frames_root, listing), _input_id)
    return CorpusListing(root=root, layout="color", sheet=sheet_path, samples=samples, rejections=rejections, dataset=DATASET)
