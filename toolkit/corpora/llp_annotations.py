"""Reader of the LLP (Look, Listen and Parse) annotation files, as they lie on disk.

Weak (video-level) labels: `AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv`,
`AVVP_dataset_full.csv` -- tab-separated, header `filename<TAB>event_labels`, the labels a
comma-separated list of class names (`BjCEufrlXm4_20_30<TAB>Speech,Dog`).

Dense (segment-level) labels of val and test: `AVVP_eval_audio.csv` / `AVVP_eval_visual.csv` --
tab-separated, header `filename onset offset event_labels`, integer seconds, offset exclusive,
one class a row. A video has 10 one-second segments; its id (the feature file name) is
`filename[:11]`.

The real eval files have defects. They are kept and reported, and handled as the reference AVVP
evaluation handles them: the reference fills `gt[class, onset:offset] = 1` for the rows whose
filename is a video of the split, so a row with onset >= offset adds nothing and a row naming no
video of the split is ignored. Dense classes that the weak label lacks are counted, not removed.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mertk.errors import InputError

LLP_CLASSES: tuple[str, ...] = (
    "Speech",
    "Car",
    "Cheering",
    "Dog",
    "Cat",
    "Frying_(food)",
    "Basketball_bounce",
    "Fire_alarm",
    "Chainsaw",
    "Cello",
    "Banjo",
    "Singing",
    "Chicken_rooster",
    "Violin_fiddle",
    "Vacuum_cleaner",
    "Baby_laughter",
    "Accordion",
    "Lawn_mower",
    "Motorcycle",
    "Helicopter",
    "Acoustic_guitar",
    "Telephone_bell_ringing",
    "Baby_cry_infant_cry",
    "Blender",
    "Clapping",
)
LLP_CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(LLP_CLASSES)}
NUM_CLASSES = len(LLP_CLASSES)  # 25
NUM_SEGMENTS = 10  # one-second segments of a 10 s clip
VIDEO_ID_LENGTH = 11
MODALITIES: tuple[str, ...] = ("audio", "visual")

WEAK_LABEL_FILES: dict[str, str] = {
    "train": "AVVP_train.csv",
    "val": "AVVP_val_pd.csv",
    "test": "AVVP_test_pd.csv",
    "full": "AVVP_dataset_full.csv",
}
DENSE_LABEL_FILES: dict[str, str] = {
    "audio": "AVVP_eval_audio.csv",
    "visual": "AVVP_eval_visual.csv",
}
# The full dense truth of a generated corpus (mertk sample-data llp), every split, in the eval layout.
GROUND_TRUTH_FILES: dict[str, str] = {
    "audio": "ground_truth_audio.csv",
    "visual": "ground_truth_visual.csv",
}
WEAK_HEADER = ("filename", "event_labels")
DENSE_HEADER = ("filename", "onset", "offset", "event_labels")


class LlpAnnotationError(InputError):
    """An LLP annotation file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read (collected instead of raised when the caller asks)."""

    file: str
    line: int  # 1-based line number in the file (the header is line 1)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class WeakLabel:
    """One LLP video and its video-level labels (class names in file order, no duplicates)."""

    filename: str
    video_id: str
    split: str
    labels: tuple[str, ...]

    @property
    def label_indices(self) -> tuple[int, ...]:
        return tuple(LLP_CLASS_INDEX[name] for name in self.labels)

    def label_vector(self) -> np.ndarray:
        """(25,) bool: True for the classes of the weak label."""
        vector_c = np.zeros(NUM_CLASSES, dtype=bool)
        vector_c[list(self.label_indices)] = True
        return vector_c


def video_id_of(filename: str) -> str:
    """The YouTube id of an LLP filename (`BjCEufrlXm4_20_30` -> `BjCEufrlXm4`)."""
    return filename[:VIDEO_ID_LENGTH]


def llp_annotation_files(root: Path | str) -> dict[str, Path]:
    """Find the LLP annotation CSVs under `root` (at its top level or in its `data/` folder).

    Returns {"train"|"val"|"test"|"full"|"audio"|"visual": path} for the files that exist
    (keys of WEAK_LABEL_FILES and DENSE_LABEL_FILES). A file at the top level wins over one in
    `data/`. Raises LlpAnnotationError when `root` is not a folder or holds none of them.
    """
    root = Path(root)
    if not root.is_dir():
        raise LlpAnnotationError(f"{root}: not a folder (expected the LLP folder holding AVVP_*.csv)")
    found: dict[str, Path] = {}
    for key, name in {**WEAK_LABEL_FILES, **DENSE_LABEL_FILES}.items():
        for folder in (root, root / "data"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
    if not found:
        raise LlpAnnotationError(
            f"{root}: no LLP annotation files found (looked for "
            f"{', '.join(sorted({**WEAK_LABEL_FILES, **DENSE_LABEL_FILES}.values()))} in it and in {root / 'data'})"
        )
    return found


def require_annotation_file(root: Path | str, key: str) -> Path:
    """The path of one annotation file (`key` as in llp_annotation_files), or a clear error."""
    files = llp_annotation_files(root)
    if key not in files:
        name = {**WEAK_LABEL_FILES, **DENSE_LABEL_FILES}[key]
        raise LlpAnnotationError(f"{root}: {name} not found (looked in {root} and {Path(root) / 'data'})")
    return files[key]


def _read_rows(path: Path, header: tuple[str, ...]) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) for each data row of a tab-separated file with the given header."""
    path = Path(path)
    if not path.is_file():
        raise LlpAnnotationError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LlpAnnotationError(f"{path}: cannot read as UTF-8 text ({error})") from error
    lines = text.splitlines()
    if not lines:
        raise LlpAnnotationError(f"{path}: empty file (expected the header {'<TAB>'.join(header)})")
    found_header = tuple(name.strip() for name in lines[0].split("\t"))
    if found_header != header:
        raise LlpAnnotationError(
            f"{path}:1: header is {'<TAB>'.join(found_header)!r}, expected {'<TAB>'.join(header)!r} "
            "(tab-separated)"
        )
    for index, line in enumerate(csv.reader(lines[1:], delimiter="\t"), start=2):
        if not line or all(not value.strip() for value in line):
            continue  # blank line (e.g. at the end of the file)
        yield index, [value.strip() for value in line]


def _reject_or_raise(bad: BadRow, rejections: list[BadRow] | None) -> None:
    if rejections is None:
        raise LlpAnnotationError(str(bad))
    rejections.append(bad)


def read_weak_labels(
    path: Path | str, split: str, rejections: list[BadRow] | None = None
) -> list[WeakLabel]:
    """Read one weak-label CSV (`AVVP_train.csv`, `AVVP_val_pd.csv`, ...) into WeakLabel records.

    `split` is stored on every record ("train", "val", "test", "full" or any name the caller
    uses). A malformed row (wrong field count, empty filename or labels, unknown class name,
    repeated filename) raises LlpAnnotationError naming file and line; when a `rejections` list
    is given, the row is appended to it as a BadRow instead and reading goes on.
    A class repeated within one row is kept once.
    """
    path = Path(path)
    records: list[WeakLabel] = []
    seen: dict[str, int] = {}
    for line_number, fields in _read_rows(path, WEAK_HEADER):
        if len(fields) != 2:
            _reject_or_raise(
                BadRow(str(path), line_number, f"expected 2 tab-separated fields, found {len(fields)}"), rejections
            )
            continue
        filename, label_text = fields
        names = [name.strip() for name in label_text.split(",") if name.strip()]
        problem = None
        if not filename:
            problem = "empty filename"
        elif len(filename) < VIDEO_ID_LENGTH:
            problem = f"filename {filename!r} is shorter than an 11-character video id"
        elif not names:
            problem = f"{filename}: no event labels"
        elif filename in seen:
            problem = f"{filename}: repeated (first on line {seen[filename]})"
        else:
            unknown = [name for name in names if name not in LLP_CLASS_INDEX]
            if unknown:
                problem = f"{filename}: unknown class {', '.join(map(repr, unknown))} (not one of the 25 LLP classes)"
        if problem:
            _reject_or_raise(BadRow(str(path), line_number, problem), rejections)
            continue
        seen[filename] = line_number
        labels = tuple(dict.fromkeys(names))
        records.append(WeakLabel(filename, video_id_of(filename), split, labels))
    return records


@dataclass
class DenseLabelDefects:
    """What the dense eval files hold that the reference protocol ignores or that looks wrong.

    Each list holds BadRow entries (file, line, reason); `summary()` gives counts per kind.
    - empty_runs: onset >= offset; such a row marks no segment.
    - out_of_range: onset/offset outside [0, 10]; clipped to it (the reference slices the same way).
    - unknown_video: filename is no video of the requested videos nor of `other_filenames`
      (e.g. a truncated id); the row is ignored.
    - not_in_weak_label: dense class absent from the video's weak label; kept as it is.
    - malformed: unreadable rows (bad field count, non-integer time, unknown class); ignored.
    """

    empty_runs: list[BadRow] = field(default_factory=list)
    out_of_range: list[BadRow] = field(default_factory=list)
    unknown_video: list[BadRow] = field(default_factory=list)
    not_in_weak_label: list[BadRow] = field(default_factory=list)
    malformed: list[BadRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "empty_runs": len(self.empty_runs),
            "out_of_range": len(self.out_of_range),
            "unknown_video": len(self.unknown_video),
            "not_in_weak_label": len(self.not_in_weak_label),
            "malformed": len(self.malformed),
        }

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def summary(self) -> str:
        """One line, e.g. '4 rows with onset >= offset (mark nothing); 25 rows whose filename is
        no val/test video (ignored); ...'; empty string when there is no defect."""
        descriptions = {
            "empty_runs": "rows with onset >= offset (mark nothing)",
            "out_of_range": "rows with times outside [0, 10] (clipped)",
            "unknown_video": "rows whose filename is no val/test video (ignored)",
            "not_in_weak_label": "dense classes missing from the weak label (kept)",
            "malformed": "malformed rows (ignored)",
        }
        parts = [f"{count} {descriptions[kind]}" for kind, count in self.counts().items() if count]
        return "; ".join(parts)


@dataclass
class DenseLabels:
    """Segment-level ground truth of a set of videos, in the order the caller gave them.

    audio_v_c_t / visual_v_c_t: (videos, 25, 10) bool, [video, class, segment].
    """

    filenames: tuple[str, ...]
    audio_v_c_t: np.ndarray
    visual_v_c_t: np.ndarray
    defects: DenseLabelDefects
    rows_of_other_videos: int = 0  # rows of `other_filenames` videos, skipped (not a defect)

    def index_of(self, filename: str) -> int:
        return self._index[filename]

    def matrices(self, filename: str) -> tuple[np.ndarray, np.ndarray]:
        """(audio_c_t, visual_c_t) of one video, each (25, 10) bool."""
        index = self._index[filename]
        return self.audio_v_c_t[index], self.visual_v_c_t[index]

    def __post_init__(self) -> None:
        self._index = {name: index for index, name in enumerate(self.filenames)}


def read_dense_labels(
    audio_path: Path | str,
    visual_path: Path | str,
    filenames: Sequence[str] | Sequence[WeakLabel],
    other_filenames: Iterable[str] = (),
) -> DenseLabels:
    """Read `AVVP_eval_audio.csv` and `AVVP_eval_visual.csv` into (videos, 25, 10) matrices.

    `filenames`: the videos to build matrices for (e.g. the val or test split), as filenames or
    as WeakLabel records; with WeakLabel records, dense classes missing from a video's weak label
    are also reported. A video without rows gets all-False matrices (it holds no event).
    `other_filenames`: videos whose rows are skipped without counting as a defect (the other
    eval split: the eval files hold val and test together); `.rows_of_other_videos` counts them.
    Defects are handled as the reference protocol does (see the module docstring) and returned
    in `.defects`; nothing is raised for them. Missing files or a wrong header raise
    LlpAnnotationError.
    """
    weak_by_filename: dict[str, WeakLabel] = {}
    names: list[str] = []
    for item in filenames:
        if isinstance(item, WeakLabel):
            weak_by_filename[item.filename] = item
            names.append(item.filename)
        else:
            names.append(str(item))
    index = {name: position for position, name in enumerate(names)}
    others = set(other_filenames) - set(index)
    rows_of_other_videos = 0
    defects = DenseLabelDefects()
    matrices = {}
    for modality, path in (("audio", Path(audio_path)), ("visual", Path(visual_path))):
        matrix_v_c_t = np.zeros((len(names), NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
        for line_number, fields in _read_rows(path, DENSE_HEADER):
            where = (str(path), line_number)
            if len(fields) != 4:
                defects.malformed.append(BadRow(*where, f"expected 4 tab-separated fields, found {len(fields)}"))
                continue
            filename, onset_text, offset_text, class_name = fields
            try:
                onset, offset = int(onset_text), int(offset_text)
            except ValueError:
                defects.malformed.append(
                    BadRow(*where, f"{filename}: onset/offset {onset_text!r}/{offset_text!r} are not integers")
                )
                continue
            if class_name not in LLP_CLASS_INDEX:
                defects.malformed.append(BadRow(*where, f"{filename}: unknown class {class_name!r}"))
                continue
            if filename not in index:
                if filename in others:
                    rows_of_other_videos += 1
                else:
                    defects.unknown_video.append(BadRow(*where, f"{filename}: no video has this filename"))
                continue
            if onset >= offset:
                defects.empty_runs.append(
                    BadRow(*where, f"{filename} {modality} {class_name}: onset {onset} >= offset {offset}")
                )
                continue
            if onset < 0 or offset > NUM_SEGMENTS:
                defects.out_of_range.append(
                    BadRow(*where, f"{filename} {modality} {class_name}: [{onset}, {offset}) outside [0, 10]")
                )
                onset, offset = max(onset, 0), min(offset, NUM_SEGMENTS)
            weak = weak_by_filename.get(filename)
            if weak is not None and class_name not in weak.labels:
                defects.not_in_weak_label.append(
                    BadRow(*where, f"{filename} {modality}: {class_name} is not in the weak label {','.join(weak.labels)}")
                )
            matrix_v_c_t[index[filename], LLP_CLASS_INDEX[class_name], onset:offset] = True
        matrices[modality] = matrix_v_c_t
    return DenseLabels(tuple(names), matrices["audio"], matrices["visual"], defects, rows_of_other_videos)


def read_split_dense_labels(root: Path | str, split: str) -> tuple[list[WeakLabel], DenseLabels]:
    """Weak labels of the val or test split under `root` and their dense labels, in file order."""
    if split not in ("val", "test"):
        raise LlpAnnotationError(f"dense labels exist for the val and test splits only, not {split!r}")
    weak = read_weak_labels(require_annotation_file(root, split), split)
    other_split = "test" if split == "val" else "val"
    files = llp_annotation_files(root)
    # The eval files hold val and test together: the other split's rows are no defect.
    other = [record.filename for record in read_weak_labels(files[other_split], other_split)] if other_split in files else []
    dense = read_dense_labels(
        require_annotation_file(root, "audio"), require_annotation_file(root, "visual"), weak, other
    )
    return weak, dense


def class_counts(records: Iterable[WeakLabel]) -> Counter:
    """How many videos carry each class (for reports)."""
    return Counter(name for record in records for name in record.labels)
