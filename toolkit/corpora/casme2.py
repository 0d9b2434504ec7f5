"""CASME II reader: the coding sheet and the frame folders, as they lie on disk.

One reader per corpus, behind the same small interface (lhotse-style): `read_<corpus>(root)`
returns a `CorpusListing` of typed samples plus the sheet rows it had to reject, each with a
reason that names the sheet file and row. A second corpus (SAMM) adds a module with its own
`read_samm(root)` returning the same listing; the Uni-MER pipeline only uses the fields of
`MerSample` below.

Layouts (both 200 fps, the frame number in the file name is the one the sheet uses):
  raw      CASME2_RAW_selected/sub01/EP02_01f/img46.jpg
  cropped  Cropped/sub01/EP02_01f/reg_img46.jpg
Sheet: CASME2-coding-20140508.xlsx or CASME2-coding-updated.xlsx (or the same names as .csv),
columns Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion,
plus unnamed empty columns. ApexFrame is '/' when unknown (the pipeline estimates it).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mertk.au.facs import AuLabel, AuParseError, parse_au_string
from mertk.corpora.casme2_layout import (  # noqa: F401 - the layout's names, re-exported for readers of this module
    FRAME_PREFIXES,
    LAYOUT_FOLDERS,
    LAYOUTS,
    REQUIRED_COLUMNS,
    SHEET_NAMES,
    frame_file_name,
    subject_folder_name,
)
from mertk.errors import InputError
from mertk.shards.manifest import Rejection

DATASET = "casme2"
FRAME_PATTERNS = {name: re.compile(rf"^{prefix}(\d+)\.jpe?g$", re.I) for name, prefix in FRAME_PREFIXES.items()}

EMOTIONS = ("happiness", "disgust", "surprise", "repression", "fear", "sadness", "others")
# 5-class protocol: fear and sadness are too rare in CASME II and are dropped.
EMOTION_5CLASS = {e: e for e in ("happiness", "disgust", "surprise", "repression", "others")}
# MEGC2019 composite: negative = disgust + repression (CASME II part), positive = happiness.
EMOTION_3CLASS = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}

Layout = Literal["auto", "raw", "cropped"]


class Casme2LayoutError(InputError, FileNotFoundError):
    """The corpus folder cannot be read at all (no sheet, no frame folder, missing columns)."""


@dataclass(frozen=True)
class MerSample:
    """One micro-expression clip of any corpus: what the Uni-MER pipeline needs to know.

    `frames` maps each frame number found on disk to its file, sorted by number. `apex_frame` is
    None when the sheet does not give it.
    """

    dataset: str
    subject: str
    episode: str
    onset_frame: int
    apex_frame: int | None
    offset_frame: int
    au_labels: tuple[AuLabel, ...]
    au_text: str
    emotion: str
    emotion_5class: str | None
    emotion_3class: str | None
    frames: tuple[tuple[int, str], ...] = field(repr=False)
    source: str = ""  # "<sheet> row N", for messages

    @property
    def sample_id(self) -> str:
        return f"{self.subject}/{self.episode}"

    def frame_path(self, number: int) -> Path:
        return Path(self.frame_file(number))

    def frame_file(self, number: int) -> str:
        """The path of frame `number` as a string (what a decoder takes)."""
        for frame, path in self.frames:
            if frame == number:
                return path
        raise KeyError(f"{self.sample_id}: no frame {number} on disk")

    @property
    def frame_numbers(self) -> tuple[int, ...]:
        return tuple(frame for frame, _ in self.frames)


Casme2Sample = MerSample  # CASME II rows are plain MerSamples with dataset == "casme2"


@dataclass
class CorpusListing:
    """What a corpus reader returns: usable samples in sheet order, and rejected sheet rows."""

    root: Path
    layout: str
    sheet: Path
    samples: list[MerSample]
    rejections: list[Rejection]


def find_sheet(root: Path) -> Path:
    """The coding sheet in the corpus root (or one folder below it)."""
    for candidate in [root / name for name in SHEET_NAMES] + [p / name for p in sorted(root.iterdir()) if p.is_dir() for name in SHEET_NAMES]:
        if candidate.is_file():
            return candidate
    raise Casme2LayoutError(f"{root}: no CASME II coding sheet found (looked for {', '.join(SHEET_NAMES)})")


def find_layout(root: Path, layout: Layout = "auto") -> tuple[str, Path]:
    """(layout name, frame folder). `auto` prefers the raw frames (whole face for the detector)."""
    if layout not in LAYOUTS:
        raise Casme2LayoutError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    names = ("raw", "cropped") if layout == "auto" else (layout,)
    for name in names:
        folder = root / LAYOUT_FOLDERS[name]
        if folder.is_dir():
            return name, folder
    wanted = " or ".join(LAYOUT_FOLDERS[n] for n in names)
    raise Casme2LayoutError(f"{root}: no frame folder {wanted}")


def read_sheet(path: Path) -> list[dict[str, str]]:
    """Sheet rows as dicts of stripped strings ('' for empty cells), header names stripped.

    Read with openpyxl (first worksheet) or the csv module rather than pandas: importing pandas
    alone takes longer than reading a CASME II sheet. Numbers become text as Excel shows them
    ('46' for 46 and 46.0, '4.5' for 4.5); a repeated header keeps its first column."""
    try:
        table = _csv_table(path) if path.suffix.lower() == ".csv" else _xlsx_table(path)
    except Exception as error:  # openpyxl / zipfile / csv raise many types for a damaged file
        raise Casme2LayoutError(f"{path}: not a readable coding sheet: {error}") from None
    if not table:
        raise Casme2LayoutError(f"{path}: the coding sheet is empty")
    header = [str(c).strip() if c not in (None, "") else f"Unnamed: {i}" for i, c in enumerate(table[0])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise Casme2LayoutError(f"{path}: the coding sheet lacks column(s) {', '.join(missing)} (has {', '.join(header)})")
    positions = {name: header.index(name) for name in REQUIRED_COLUMNS}
    rows = []
    for cells in table[1:]:
        rows.append({name: (_cell_text(cells[i]) if i < len(cells) else "") for name, i in positions.items()})
    return rows


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _csv_table(path: Path) -> list[list[str]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.reader(handle)]


def _xlsx_table(path: Path) -> list[list[object]]:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        table = [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    finally:
        workbook.close()
    while table and all(c in (None, "") for c in table[-1]):  # trailing empty rows
        table.pop()
    return table


class _RowError(ValueError):
    pass


def _integer(text: str, column: str) -> int:
    """'46', '46.0' (Excel numbers read as text) -> 46."""
    match = re.fullmatch(r"(\d+)(?:\.0+)?", text)
    if not match:
        raise _RowError(f"{column} {text!r} is not a frame number")
    return int(match.group(1))


def _subject_folder(text: str) -> str:
    match = re.fullmatch(r"(?:sub)?(\d+)(?:\.0+)?", text, re.I)
    if not match:
        raise _RowError(f"Subject {text!r} is not a subject number")
    return subject_folder_name(int(match.group(1)))


def _au_text(text: str) -> str:
    # Excel may store a lone AU as a number: '4.0' -> '4'
    return re.sub(r"(\d+)\.0+\b", r"\1", text)


def _frames_on_disk(folder: Path, pattern: re.Pattern) -> tuple[tuple[int, str], ...]:
    frames = []
    with os.scandir(folder) as entries:  # file types from the directory listing: no stat per frame
        for entry in entries:
            match = pattern.match(entry.name)
            if match and entry.is_file():
                frames.append((int(match.group(1)), os.path.join(str(folder), entry.name)))
    return tuple(sorted(frames))


def _parse_row(row: dict[str, str], source: str, root: Path, layout: str, frame_folder: Path) -> MerSample:
    subject = _subject_folder(row["Subject"])
    episode = row["Filename"]
    if not episode:
        raise _RowError("Filename is empty")
    episode_dir = frame_folder / subject / episode
    try:
        inside = episode_dir.resolve().relative_to(frame_folder.resolve())
    except ValueError:
        inside = None
    if inside is None or len(inside.parts) != 2 or not re.fullmatch(r"[A-Za-z0-9_\-]+", episode):
        raise _RowError(f"Filename {episode!r} would leave the corpus folder {frame_folder}")
    onset = _integer(row["OnsetFrame"], "OnsetFrame")
    offset = _integer(row["OffsetFrame"], "OffsetFrame")
    apex_text = row["ApexFrame"]
    apex = None if apex_text in ("/", "") else _integer(apex_text, "ApexFrame")
    order = (onset, apex, offset) if apex is not None else (onset, offset)
    if list(order) != sorted(order) or onset == offset:
        raise _RowError(f"frame order is wrong: onset {onset}, apex {apex_text or '/'}, offset {offset} (needs onset <= apex <= offset, onset < offset)")
    emotion = row["Estimated Emotion"].lower()
    if emotion not in EMOTIONS:
        raise _RowError(f"unknown emotion {row['Estimated Emotion']!r} (expected one of {', '.join(EMOTIONS)})")
    au_text = _au_text(row["Action Units"])
    try:
        au_labels = tuple(parse_au_string(au_text))
    except AuParseError as error:
        raise _RowError(f"Action Units {row['Action Units']!r}: {error}") from None
    if not episode_dir.is_dir():
        raise _RowError(f"frame folder {episode_dir.relative_to(root)} is missing")
    frames = _frames_on_disk(episode_dir, FRAME_PATTERNS[layout])
    numbers = {n for n, _ in frames}
    needed = [("onset", onset), ("offset", offset)] + ([("apex", apex)] if apex is not None else [])
    missing = [f"{name} frame {frame_file_name(n, layout)}" for name, n in needed if n not in numbers]
    if missing:
        raise _RowError(f"{', '.join(missing)} missing in {episode_dir.relative_to(root)}")
    return MerSample(
        dataset=DATASET,
        subject=subject,
        episode=episode,
        onset_frame=onset,
        apex_frame=apex,
        offset_frame=offset,
        au_labels=au_labels,
        au_text=au_text,
        emotion=emotion,
        emotion_5class=EMOTION_5CLASS.get(emotion),
        emotion_3class=EMOTION_3CLASS.get(emotion),
        frames=frames,
        source=source,
    )


def read_casme2(root: Path | str, layout: Layout = "auto", sheet: Path | str | None = None) -> CorpusListing:
    """Read the coding sheet and index the frames of every row; bad rows become rejections.

    Raises Casme2LayoutError only when nothing can be read (no sheet, no frame folder, sheet
    without the expected columns). A row is rejected (and the rest read on) when its subject or
    frame numbers do not parse, its frames are in the wrong order, its Filename would leave the
    corpus folder, its emotion or an AU token is unknown, its frame folder or its onset / apex /
    offset frame is missing, or it repeats an earlier row's sample.
    """
    root = Path(root)
    if not root.is_dir():
        raise Casme2LayoutError(f"{root}: no such corpus folder")
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    layout_name, frame_folder = find_layout(root, layout)
    samples: list[MerSample] = []
    rejections: list[Rejection] = []
    seen: set[str] = set()
    for index, row in enumerate(read_sheet(sheet_path)):
        if not any(row.values()):
            continue  # trailing empty spreadsheet rows are not inputs
        source = f"{sheet_path.name} row {index + 2}"  # row 1 is the header
        try:
            subject_id = _subject_folder(row["Subject"])
        except _RowError:
            subject_id = row["Subject"] or "?"
        input_id = f"{subject_id}/{row['Filename'] or '?'}"
        try:
            sample = _parse_row(row, source, root, layout_name, frame_folder)
            input_id = sample.sample_id
            if sample.sample_id in seen:
                raise _RowError(f"repeats sample {sample.sample_id} of an earlier row")
        except _RowError as error:
            rejections.append(Rejection(input=input_id, reason=f"{source}: {error}", file=str(sheet_path)))
            continue
        seen.add(sample.sample_id)
        samples.append(sample)
    return CorpusListing(root=root, layout=layout_name, sheet=sheet_path, samples=samples, rejections=rejections)
