"""What every micro-expression corpus reader shares: the sample record, the listing, sheet reading.

One reader per corpus (`casme2`, `samm`, `smic`, `casme3`, `mmew`), each `read_<corpus>(root)`
returning a `CorpusListing`: the usable samples, as `MerSample`s, and the rows it had to reject,
each with a reason that names the sheet and row (or folder). The Uni-MER builder and the MER
protocols only use the fields of `MerSample`, whatever the corpus.

Sheets are read with openpyxl (every worksheet, cached values of formula cells) or the csv
module; the header row is found, not assumed to be the first (SAMM puts title and notes rows
above it), and every cell becomes text as Excel shows it ('46' for 46, 46.0 and '46').
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mertk.au.notation import AuCoding, AuLabel, AuParseError, Option, parse_au_cell
from mertk.errors import InputError
from mertk.shards.manifest import Rejection

# Protocol names: each sample carries its class under every protocol its corpus takes part in.
PROTOCOL_CASME2_5CLASS = "5class"  # CASME II: happiness, disgust, surprise, repression, others
PROTOCOL_MEGC2019 = "3class"  # MEGC2019 composite classes: negative, positive, surprise
PROTOCOL_OBJECTIVE = "objective"  # objective classes (I..VII) where the sheet gives them
PROTOCOL_CASME3 = {"casme3-3class": "casme3-3class", "casme3-4class": "casme3-4class", "casme3-7class": "casme3-7class"}
MEGC2019_CLASSES = ("negative", "positive", "surprise")  # label 0, 1, 2 in the organisers' list

# A micro-expression lasts at most half a second (the field's definition); used to bound a
# window where the sheet gives no offset.
MAX_MICRO_EXPRESSION_S = 0.5
# Rows above the header that a sheet may carry (SAMM: title and notes).
HEADER_SEARCH_ROWS = 40


class CorpusLayoutError(InputError):
    """The corpus folder cannot be read at all: no sheet, no frame folder, not the corpus it claims."""


@dataclass(frozen=True)
class MerSample:
    """One micro-expression clip of any corpus: what the Uni-MER pipeline and the protocols need.

    `subject` and `clip` are the corpus' own names as normalised by its reader (CASME II `sub01`
    / `EP02_01f`, SAMM `006` / `006_1_2`, SMIC `s03` / `s03_ne_03`, CAS(ME)^3 `spNO.1` /
    `a_116`, MMEW `S01` / `S01_happiness_01`); `sample_id` is unique within the corpus and
    `qualified_id` across corpora. `frames` maps each frame number found on disk to its file,
    sorted by number; `fps` is the corpus' frame rate.

    `apex_frame` is None when the sheet's apex cannot be used (`apex_note` says why: '/', 0,
    outside onset..offset); the builder then estimates it from the motion curve and flags it.
    `offset_estimated` is True when the sheet gives no usable offset and the reader bounded the
    clip itself (`offset_note` says how).

    AU coding: `au_labels` are the definite AUs, `au_alternatives` the groups of options the
    coders wrote with 'or' (one of each group was meant), `au_uncertain` marks a '?' cell.
    `emotion` is the corpus' own class (lower case); `protocol_labels` gives the class under each
    protocol the sample takes part in (absent = dropped by that protocol).
    """

    dataset: str
    subject: str
    clip: str
    onset_frame: int
    apex_frame: int | None
    offset_frame: int
    au_labels: tuple[AuLabel, ...]
    au_text: str
    emotion: str
    frames: tuple[tuple[int, str], ...] = field(repr=False)
    fps: float = 200.0
    source: str = ""  # "<sheet> row N" or the frame folder, for messages
    au_alternatives: tuple[tuple[Option, ...], ...] = ()
    au_uncertain: bool = False
    apex_note: str = ""
    offset_estimated: bool = False
    offset_note: str = ""
    objective_class: str | None = None
    protocol_labels: tuple[tuple[str, str], ...] = ()
    local_id: str = ""  # overrides subject/clip as the sample id (used where a clip name already holds the subject)

    @property
    def sample_id(self) -> str:
        return self.local_id or f"{self.subject}/{self.clip}"

    @property
    def qualified_id(self) -> str:
        """Unique across corpora: 'samm/006_1_2', 'casme2/sub01/EP02_01f' (a sample already
        renamed to it by `mertk.corpora.readers.merge_listings` keeps it)."""
        prefix = f"{self.dataset}/"
        return self.sample_id if self.sample_id.startswith(prefix) else prefix + self.sample_id

    @property
    def episode(self) -> str:
        """CASME II's word for the clip (the older field name)."""
        return self.clip

    @property
    def apex_to_estimate(self) -> bool:
        return self.apex_frame is None

    @property
    def has_au_coding(self) -> bool:
        """False for corpora without AU codes (SMIC) and '?' cells: captions come from the flow alone."""
        return bool(self.au_labels or self.au_alternatives)

    def label(self, protocol: str) -> str | None:
        """The sample's class under `protocol`, or None where the protocol drops it."""
        for name, value in self.protocol_labels:
            if name == protocol:
                return value
        return None

    @property
    def emotion_5class(self) -> str | None:
        return self.label(PROTOCOL_CASME2_5CLASS)

    @property
    def emotion_3class(self) -> str | None:
        return self.label(PROTOCOL_MEGC2019)

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


@dataclass
class CorpusListing:
    """What a corpus reader returns: usable samples in sheet (or folder) order, and rejected rows."""

    root: Path
    layout: str
    sheet: Path | None
    samples: list[MerSample]
    rejections: list[Rejection]
    dataset: str = ""


class RowError(ValueError):
    """One sheet row (or clip folder) cannot become a sample; the message is its reason."""


# --- emotion maps -----------------------------------------------------------------------------


def protocol_labels(emotion: str, maps: Mapping[str, Mapping[str, str]], objective_class: str | None = None) -> tuple[tuple[str, str], ...]:
    """(protocol, class) for each protocol map that keeps `emotion`, plus the objective class."""
    labels = [(protocol, mapping[emotion]) for protocol, mapping in maps.items() if emotion in mapping]
    if objective_class:
        labels.append((PROTOCOL_OBJECTIVE, objective_class))
    return tuple(labels)


def normalise_emotion(text: str, aliases: Mapping[str, str], known: Sequence[str], column: str = "emotion") -> str:
    """'Happiness ' / 'happy' / 'Others' -> the corpus' own spelling, or RowError naming the classes."""
    key = re.sub(r"\s+", " ", text.strip().lower())
    key = aliases.get(key, key)
    if key not in known:
        raise RowError(f"unknown {column} {text!r} (expected one of {', '.join(known)})")
    return key


OBJECTIVE_NUMERALS = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI", "7": "VII"}


def objective_class(text: str) -> str | None:
    """'1', '1.0', 'I', 'Class I' -> 'I'; '' -> None; any other spelling is kept as written (a
    class the sheet has is never a reason to lose the sample)."""
    value = re.sub(r"^class\s*", "", text.strip(), flags=re.I).upper()
    value = re.sub(r"\.0+$", "", value)
    if not value:
        return None
    if value in OBJECTIVE_NUMERALS:
        return OBJECTIVE_NUMERALS[value]
    return value if value in OBJECTIVE_NUMERALS.values() else text.strip()


# --- AU cells ---------------------------------------------------------------------------------


def au_coding(text: str, column: str = "Action Units") -> AuCoding:
    try:
        return parse_au_cell(text)
    except AuParseError as error:
        raise RowError(f"{column} {text!r}: {error}") from None


# --- sheets -----------------------------------------------------------------------------------


def cell_text(value: object) -> str:
    """A cell as Excel shows it: None -> '', 46.0 -> '46', ' 4 ' -> '4'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _header_key(name: object) -> str:
    return re.sub(r"\s+", " ", cell_text(name)).lower()


@dataclass(frozen=True)
class SheetRow:
    """One data row: `number` is its row in the spreadsheet (1-based, as Excel shows it)."""

    number: int
    cells: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.cells.get(column, "")

    @property
    def is_empty(self) -> bool:
        return not any(self.cells.values())


@dataclass(frozen=True)
class SheetTable:
    path: Path
    worksheet: str
    header_row: int
    columns: tuple[str, ...]  # canonical names found
    rows: list[SheetRow]

    def source(self, row: SheetRow) -> str:
        return f"{self.path.name} row {row.number}"


def _csv_table(path: Path) -> list[list[object]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [list(row) for row in csv.reader(handle)]


def _xlsx_tables(path: Path) -> list[tuple[str, list[list[object]]]]:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        tables = []
        for worksheet in workbook.worksheets:
            table = [list(row) for row in worksheet.iter_rows(values_only=True)]
            while table and all(c in (None, "") for c in table[-1]):  # trailing empty rows
                table.pop()
            tables.append((worksheet.title, table))
    finally:
        workbook.close()
    return tables


def read_sheet_table(
    path: Path,
    columns: Mapping[str, Sequence[str]],
    required: Sequence[str],
    corpus: str,
) -> SheetTable:
    """The first worksheet with a header row holding every `required` column, and its data rows.

    `columns` maps each canonical column name to the header spellings that mean it (matched
    case-insensitively, runs of spaces as one). The header may sit below title and notes rows
    (up to HEADER_SEARCH_ROWS). Raises CorpusLayoutError, naming the corpus and the columns it
    expected, when the file cannot be read or no worksheet has such a header.
    """
    try:
        tables = [(path.name, _csv_table(path))] if path.suffix.lower() == ".csv" else _xlsx_tables(path)
    except Exception as error:  # openpyxl / zipfile / csv raise many types for a damaged file
        raise CorpusLayoutError(f"{path}: not a readable coding sheet ({corpus} expected): {error}") from None
    wanted = {canonical: {_header_key(s) for s in spellings} for canonical, spellings in columns.items()}
    seen_headers = []
    for title, table in tables:
        for index, cells in enumerate(table[:HEADER_SEARCH_ROWS]):
            keys = [_header_key(c) for c in cells]
            positions: dict[str, int] = {}
            for canonical, spellings in wanted.items():
                for position, key in enumerate(keys):
                    if key in spellings:
                        positions[canonical] = position  # a repeated header keeps its first column
                        break
            if all(name in positions for name in required):
                rows = []
                for number, data in enumerate(table[index + 1 :], start=index + 2):
                    rows.append(SheetRow(number, {name: cell_text(data[i]) if i < len(data) else "" for name, i in positions.items()}))
                return SheetTable(path, title, index + 1, tuple(positions), rows)
            if sum(name in positions for name in required) >= 2:
                seen_headers.append((title, index + 1, [name for name in required if name not in positions], [cell_text(c) for c in cells if cell_text(c)]))
    expected = ", ".join(columns[name][0] for name in required)
    if seen_headers:
        title, row, missing, found = seen_headers[0]
        raise CorpusLayoutError(
            f"{path}: not a {corpus} coding sheet: the header in worksheet {title!r} row {row} lacks column(s) "
            f"{', '.join(columns[m][0] for m in missing)} (has {', '.join(found)}); expected {expected}"
        )
    if not any(table for _, table in tables):
        raise CorpusLayoutError(f"{path}: the coding sheet is empty ({corpus} expected)")
    raise CorpusLayoutError(f"{path}: not a {corpus} coding sheet: no header row with columns {expected} in any worksheet")


# --- cells ------------------------------------------------------------------------------------


def frame_number(text: str, column: str) -> int:
    """'46', '46.0', '046' (numbers stored as text or as numbers) -> 46; anything else is a RowError."""
    match = re.fullmatch(r"(\d+)(?:\.0+)?", text.strip())
    if not match:
        raise RowError(f"{column} {text!r} is not a frame number")
    return int(match.group(1))


def optional_frame_number(text: str, column: str, missing: Sequence[str] = ("", "/", "-")) -> int | None:
    """Like frame_number, but None for the sheet's 'unknown' spellings ('/', '', '-') and for 0."""
    if text.strip() in missing:
        return None
    number = frame_number(text, column)
    return number if number > 0 else None


def safe_name(text: str, column: str, pattern: str = r"[A-Za-z0-9_\-.()]+") -> str:
    """A sheet value used as a folder name: refuses anything that could leave the corpus folder."""
    if not text:
        raise RowError(f"{column} is empty")
    if not re.fullmatch(pattern, text) or text in (".", "..") or ".." in text:
        raise RowError(f"{column} {text!r} would leave the corpus folder")
    return text


def check_apex(onset: int, apex: int | None, offset: int, apex_text: str, column: str = "apex") -> tuple[int | None, str]:
    """(usable apex or None, why not): an apex that is missing, 0 or outside onset..offset is left
    to the motion curve; the note says what the sheet had."""
    if apex is None:
        return None, f"{column} {apex_text.strip() or 'empty'!r} in the sheet: estimated from the motion curve"
    if apex < onset:
        return None, f"{column} {apex} before onset {onset} in the sheet: estimated from the motion curve"
    if apex > offset:
        return None, f"{column} {apex} after offset {offset} in the sheet: estimated from the motion curve"
    return apex, ""


# --- frames on disk ---------------------------------------------------------------------------


def frames_on_disk(folder: Path, pattern: re.Pattern) -> tuple[tuple[int, str], ...]:
    """(number, path) of every file in `folder` whose name matches `pattern` (group 1 = number), sorted."""
    frames = []
    with os.scandir(folder) as entries:  # file types from the directory listing: no stat per frame
        for entry in entries:
            match = pattern.match(entry.name)
            if match and entry.is_file():
                frames.append((int(match.group(1)), os.path.join(str(folder), entry.name)))
    return tuple(sorted(frames))


def require_frames(frames: tuple[tuple[int, str], ...], onset: int, apex: int | None, offset: int, spell, folder_label: str) -> None:
    """RowError naming each of the clip's onset, offset and (when known) apex frames that is not among `frames`."""
    needed = [("onset", onset), ("offset", offset)] + ([("apex", apex)] if apex is not None else [])
    numbers = {n for n, _ in frames}
    missing = [f"{role} frame {spell(n)}" for role, n in needed if n not in numbers]
    if missing:
        raise RowError(f"{', '.join(missing)} missing in {folder_label}")


def describe_folder(root: Path, limit: int = 6) -> str:
    """'has A, B, C, ...' for an error message that says what the folder holds instead."""
    try:
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return "cannot be listed"
    if not names:
        return "is empty"
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return f"has {shown}"


def require_folder(root: Path | str, corpus: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CorpusLayoutError(f"{root}: no such corpus folder ({corpus} expected)")
    return root


def find_file(root: Path, patterns: Sequence[str], corpus: str, what: str) -> Path:
    """The first file matching one of `patterns` (globs, any letter case) in `root` or one folder below.

    Newer revisions win where several match one pattern (names sort by their date or version);
    Excel's lock files (~$name) are skipped."""
    places = [root] + [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    for pattern in patterns:
        for place in places:
            matches = sorted(
                (p for p in place.iterdir() if fnmatch.fnmatchcase(p.name.lower(), pattern.lower()) and p.is_file() and not p.name.startswith("~$")),
                reverse=True,
            )
            if matches:
                return matches[0]
    raise CorpusLayoutError(f"{root}: no {corpus} {what} found (looked for {', '.join(patterns)}); the folder {describe_folder(root)}")


def reject(rejections: list[Rejection], input_id: str, source: str, error: Exception, file: Path | None) -> None:
    rejections.append(Rejection(input=input_id, reason=f"{source}: {error}", file=str(file) if file else None))


def collect_rows(
    table: SheetTable,
    parse_row: Callable[[SheetRow, str], MerSample],
    input_id: Callable[[SheetRow], str],
) -> tuple[list[MerSample], list[Rejection]]:
    """Samples of every non-empty row, in sheet order; a row that fails (or repeats an earlier
    row's sample) becomes a rejection whose reason names the sheet and row."""
    samples: list[MerSample] = []
    rejections: list[Rejection] = []
    seen: set[str] = set()
    for row in table.rows:
        if row.is_empty:
            continue  # trailing empty spreadsheet rows are not inputs
        source = table.source(row)
        name = input_id(row)
        try:
            sample = parse_row(row, source)
            name = sample.sample_id
            if sample.sample_id in seen:
                raise RowError(f"repeats sample {sample.sample_id} of an earlier row")
        except RowError as error:
            reject(rejections, name, source, error, table.path)
            continue
        seen.add(sample.sample_id)
        samples.append(sample)
    return samples, rejections
