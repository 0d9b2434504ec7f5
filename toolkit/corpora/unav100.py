"""Reader of the UnAV-100 corpus (dense audio-visual events) as it lies on disk.

Annotations: `unav100_annotations.json` = `{"version", "database": {video_id: {"subset":
train|validation|test, "duration": seconds, "annotations": [{"segment": [start, end], "label":
text, "label_id": 0..99}]}}}`. Duplicated events (same label, both boundaries within 1e-3 s)
count once, as in the field's evaluator; how many were dropped is recorded per video.

Features, one folder: `<id>_rgb.npy`, `<id>_flow.npy` (T x 1024, I3D over 24-frame windows with a
stride of 8 frames at 25 fps: step t covers the window centred at 0.48 + 0.32 t seconds) and
`<id>_vggish.npy` (T' x 128). T' may differ from T (VGGish was run with its own hop): a gap of a
few steps is closed by cutting both streams to the shorter one (what the UnAV code does); a larger
gap means another hop, so the audio is resampled onto the visual steps by linear interpolation in
time. Either way the `FeatureAlignment` records what was done. A video of any length is read
whole. A missing, damaged, wrongly shaped or non-finite file raises FeatureFileError naming the
file; the caller rejects that video with the reason and goes on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_features import FeatureFileError, read_feature_file

ANNOTATION_FILE = "unav100_annotations.json"
ANNOTATION_FOLDER = "annotations"  # the UnAV code's layout: annotations/ and av_features/ side by side
FEATURE_FOLDER = "av_features"
NUM_CLASSES = 100
SUBSETS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
FPS = 25.0
STEP_FRAMES = 8  # stride between feature windows
WINDOW_FRAMES = 24  # frames per I3D window
STEP_SECONDS = STEP_FRAMES / FPS
FIRST_CENTRE_SECONDS = 0.5 * WINDOW_FRAMES / FPS
VISUAL_PARTS = (("rgb", 1024), ("flow", 1024))
AUDIO_PART = ("vggish", 128)
VISUAL_DIM = sum(dim for _, dim in VISUAL_PARTS)
AUDIO_DIM = AUDIO_PART[1]
DUPLICATE_TOLERANCE_SECONDS = 1e-3
# Streams whose lengths differ by at most this many steps are cut to the shorter one.
TRUNCATE_TOLERANCE_STEPS = 3


class UnavAnnotationError(ValueError):
    """The annotation file cannot be used; the message names the file and the video."""


@dataclass(frozen=True)
class UnavEvent:
    start: float
    end: float
    label: str
    label_id: int


@dataclass(frozen=True)
class UnavVideo:
    video_id: str
    subset: str  # train | validation | test
    duration: float
    events: tuple[UnavEvent, ...]  # duplicates removed, file order kept
    duplicates_removed: int = 0


@dataclass
class UnavAnnotations:
    path: Path
    version: str
    videos: dict[str, UnavVideo]  # file order
    class_names: dict[int, str]  # label_id -> label

    def split(self, split: str) -> list[UnavVideo]:
        subset = split_name(split)
        return [video for video in self.videos.values() if video.subset == subset]

    @property
    def duplicates_removed(self) -> int:
        return sum(video.duplicates_removed for video in self.videos.values())

    @property
    def event_count(self) -> int:
        return sum(len(video.events) for video in self.videos.values())


def split_name(split: str) -> str:
    """`train`, `val`/`validation` or `test` -> the subset name used in the file."""
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise UnavAnnotationError(f"unknown split {split!r}; use train, val (validation) or test") from None


def remove_duplicate_events(events: list[UnavEvent], tolerance: float = DUPLICATE_TOLERANCE_SECONDS) -> list[UnavEvent]:
    """Keep the first of events with the same label_id and both boundaries within `tolerance` seconds."""
    kept: list[UnavEvent] = []
    for event in events:
        if not any(
            other.label_id == event.label_id and abs(other.start - event.start) <= tolerance and abs(other.end - event.end) <= tolerance
            for other in kept
        ):
            kept.append(event)
    return kept


def unav_annotation_file(path: Path | str) -> Path:
    """The annotation file itself, or the one inside a corpus folder (also under `annotations/`)."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / ANNOTATION_FILE, path / ANNOTATION_FOLDER / ANNOTATION_FILE):
        if candidate.is_file():
            return candidate
    raise UnavAnnotationError(f"{path}: no {ANNOTATION_FILE} there (nor under annotations/)")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _parse_video(file: Path, video_id: str, entry: Any, class_names: dict[int, str]) -> UnavVideo:
    where = f"{file}: video {video_id}"
    if not isinstance(entry, dict):
        raise UnavAnnotationError(f"{where}: expected an object with subset, duration and annotations")
    subset = entry.get("subset")
    if subset not in SUBSETS:
        raise UnavAnnotationError(f"{where}: subset {subset!r}, expected one of {', '.join(SUBSETS)}")
    duration = _number(entry.get("duration"))
    if duration is None or duration <= 0:
        raise UnavAnnotationError(f"{where}: duration {entry.get('duration')!r}, expected a positive number of seconds")
    raw_events = entry.get("annotations", [])
    if not isinstance(raw_events, list):
        raise UnavAnnotationError(f"{where}: annotations must be a list")
    events = []
    for index, raw in enumerate(raw_events):
        at = f"{where}, annotation {index}"
        segment = raw.get("segment") if isinstance(raw, dict) else None
        if not isinstance(segment, list) or len(segment) != 2 or any(_number(v) is None for v in segment):
            raise UnavAnnotationError(f"{at}: segment {segment!r}, expected [start, end] in seconds")
        start, end = float(segment[0]), float(segment[1])
        if not 0 <= start < end:
            raise UnavAnnotationError(f"{at}: segment [{start}, {end}] is empty or negative")
        label, label_id = raw.get("label"), raw.get("label_id")
        if not isinstance(label, str) or isinstance(label_id, bool) or not isinstance(label_id, int) or not 0 <= label_id < NUM_CLASSES:
            raise UnavAnnotationError(f"{at}: label {label!r} / label_id {label_id!r}, expected text and an integer 0..{NUM_CLASSES - 1}")
        known = class_names.setdefault(label_id, label)
        if known != label:
            raise UnavAnnotationError(f"{at}: label_id {label_id} is {label!r} here but {known!r} elsewhere")
        events.append(UnavEvent(start, end, label, label_id))
    kept = remove_duplicate_events(events)
    return UnavVideo(video_id, subset, duration, tuple(kept), len(events) - len(kept))


def read_unav_annotations(path: Path | str) -> UnavAnnotations:
    """Read the whole annotation file (or the one in a corpus folder); UnavAnnotationError on bad input."""
    file = unav_annotation_file(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnavAnnotationError(f"{file}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise UnavAnnotationError(f'{file}: expected {{"version", "database": {{video_id: ...}}}}')
    class_names: dict[int, str] = {}
    videos = {str(video_id): _parse_video(file, str(video_id), entry, class_names) for video_id, entry in data["database"].items()}
    return UnavAnnotations(file, str(data.get("version", "")), videos, dict(sorted(class_names.items())))


def unav_feature_folder(root: Path | str) -> Path:
    """`root/av_features` when it exists (the UnAV layout), else `root` itself (all files in one folder)."""
    root = Path(root)
    if root.is_file():  # the annotation file itself was named: the corpus is its folder (or the one above annotations/)
        root = root.parent.parent if root.parent.name == ANNOTATION_FOLDER else root.parent
    return root / FEATURE_FOLDER if (root / FEATURE_FOLDER).is_dir() else root


def feature_steps(duration: float) -> int:
    """Feature steps of a video of `duration` seconds: 24-frame windows every 8 frames (at least 1)."""
    frames = int(round(duration * FPS))
    return max(1, (frames - WINDOW_FRAMES) // STEP_FRAMES + 1)


def step_centres_seconds(steps: int) -> np.ndarray:
    """Time (s) at the centre of each feature step's 24-frame window."""
    return FIRST_CENTRE_SECONDS + STEP_SECONDS * np.arange(steps, dtype=np.float64)


def seconds_to_steps(seconds: np.ndarray | float) -> np.ndarray | float:
    """Inverse of `step_centres_seconds` (fractional steps; may be slightly negative near 0)."""
    return (np.asarray(seconds, dtype=np.float64) - FIRST_CENTRE_SECONDS) / STEP_SECONDS


@dataclass(frozen=True)
class FeatureAlignment:
    visual_steps: int  # rows of the rgb/flow files (the shorter of the two)
    audio_steps: int  # rows of the vggish file
    steps: int  # rows of the aligned sequence
    method: str  # equal | truncated | resampled

    def to_dict(self) -> dict[str, Any]:
        return {"visual_steps": self.visual_steps, "audio_steps": self.audio_steps, "steps": self.steps, "method": self.method}


@dataclass(frozen=True)
class UnavFeatures:
    """One video's aligned streams: visual = rgb | flow (T, 2048), audio (T, 128), float32."""

    video_id: str
    visual_t_d: np.ndarray
    audio_t_d: np.ndarray
    alignment: FeatureAlignment


def feature_path(folder: Path | str, video_id: str, part: str) -> Path:
    return Path(folder) / f"{video_id}_{part}.npy"


def _read_stream(path: Path, dim: int) -> np.ndarray:
    """One feature stream of a video: (steps > 0, dim) float32, finite, or FeatureFileError naming the file."""
    return read_feature_file(path, None, dim)


def resample_steps(array_t_d: np.ndarray, steps: int) -> np.ndarray:
    """Linear interpolation of (T', d) onto `steps` rows spanning the same time."""
    source = np.linspace(0.0, 1.0, len(array_t_d)) if len(array_t_d) > 1 else np.zeros(1)
    target = np.linspace(0.0, 1.0, steps)
    right = np.clip(np.searchsorted(source, target, side="right"), 1, max(1, len(array_t_d) - 1))
    left = right - 1
    if len(array_t_d) == 1:
        return np.repeat(array_t_d, steps, axis=0)
    weight = ((target - source[left]) / (source[right] - source[left]))[:, None].astype(np.float32)
    return (array_t_d[left] * (1 - weight) + array_t_d[right] * weight).astype(np.float32)


def align_streams(visual_t_d: np.ndarray, audio_t_d: np.ndarray) -> tuple[np.ndarray, np.ndarray, FeatureAlignment]:
    visual_steps, audio_steps = len(visual_t_d), len(audio_t_d)
    if visual_steps == audio_steps:
        return visual_t_d, audio_t_d, FeatureAlignment(visual_steps, audio_steps, visual_steps, "equal")
    if abs(visual_steps - audio_steps) <= TRUNCATE_TOLERANCE_STEPS:
        steps = min(visual_steps, audio_steps)
        return visual_t_d[:steps], audio_t_d[:steps], FeatureAlignment(visual_steps, audio_steps, steps, "truncated")
    return visual_t_d, resample_steps(audio_t_d, visual_steps), FeatureAlignment(visual_steps, audio_steps, visual_steps, "resampled")


def read_unav_features(folder: Path | str, video_id: str) -> UnavFeatures:
    """The aligned streams of one video, or FeatureFileError naming the file that cannot be used."""
    rgb, flow = (_read_stream(feature_path(folder, video_id, part), dim) for part, dim in VISUAL_PARTS)
    audio = _read_stream(feature_path(folder, video_id, AUDIO_PART[0]), AUDIO_PART[1])
    # rgb and flow come from one pass of windows; a row of difference is cut like the audio gap
    visual_steps = min(len(rgb), len(flow))
    if abs(len(rgb) - len(flow)) > TRUNCATE_TOLERANCE_STEPS:
        raise FeatureFileError(feature_path(folder, video_id, "flow"), f"{len(flow)} steps but the rgb file has {len(rgb)}")
    visual = np.concatenate([rgb[:visual_steps], flow[:visual_steps]], axis=1)
    visual, audio, alignment = align_streams(visual, audio)
    return UnavFeatures(video_id, np.ascontiguousarray(visual), np.ascontiguousarray(audio), alignment)

