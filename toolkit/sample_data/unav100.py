"""A deterministic UnAV-100 corpus in the real on-disk layout, planted on real timelines.

What it writes under `out`:

- `annotations/unav100_annotations.json`: real videos of UnAV-100 with their real subset,
  duration and events (segment, label, label_id), verbatim; the planted features follow them, so
  this file is also the ground truth;
- `av_features/<id>_rgb.npy`, `<id>_flow.npy` (T x 1024) and `<id>_vggish.npy` (T' x 128),
  float32, T = the 24-frame windows every 8 frames at 25 fps that fit the duration;
- `sample_info.json`: seed, sizes, where the timelines came from, the planted defects and the
  uni-modal leaks (the marker that lets a later run replace this corpus).

Timelines: the videos of UnAV-100 whose events all belong to the `TIMELINE_CLASSES` most frequent
classes (so that a small model meets each class often enough), taken in file order per subset.
Their real mix of concurrent, overlapping and back-to-back events and of durations is kept. A
compact copy of those timelines ships with the package (`unav100_timelines.json`, derived from the
published file named in it), so a fresh clone generates the same corpus; `source=` plants on the
real annotation file instead (same selection rule, so the same videos and the same bytes).

How a step's features are made: a corpus-wide offset, plus a per-video background direction with
a slow drift, plus for every event covering the step its class direction (per stream; fixed by a
world seed, so corpora of other seeds share the semantics) weighted by the share of the step's
24-frame window inside the event, plus now and then a *uni-modal leak* (a class seen only, or
heard only: not an audio-visual event, hence not annotated) and its weaker echo in the other
stream, plus isotropic noise. Known defects of the real features are planted too: VGGish with a
few steps more or fewer than I3D, now and then another hop altogether, and in the train split one
missing, one truncated and one non-finite file (their videos must be rejected, the run go on).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mertk.corpora.unav100 import (
    ANNOTATION_FILE,
    ANNOTATION_FOLDER,
    AUDIO_PART,
    FEATURE_FOLDER,
    NUM_CLASSES,
    SUBSETS,
    VISUAL_PARTS,
    UnavAnnotations,
    feature_path,
    feature_steps,
    read_unav_annotations,
    step_centres_seconds,
)

PACKAGED_TIMELINES = "unav100_timelines.json"
INFO_NAME = "sample_info.json"
TIMELINE_CLASSES = 10
PACKAGED_SIZES = {"train": 240, "validation": 60, "test": 60}
DEFAULT_SIZES = {"train": 160, "validation": 40, "test": 40}
WORLD_SEED = 20_250_714  # fixes the class directions: the "extractors" of every generated corpus
SOURCE_NOTE = (
    "UnAV-100 annotations (ttgeng233/UnAV, data/unav100_annotations.json at commit 60144ed): "
    f"videos whose events all belong to the {TIMELINE_CLASSES} most frequent classes, first in file order per subset"
)


class SampleUnavError(ValueError):
    """The corpus cannot be written (bad option, occupied folder, unreadable source)."""


@dataclass(frozen=True)
class Difficulty:
    event: float = 1.0  # norm of a class direction at full coverage
    event_spread: float = 0.35  # per-event strength in event * [1 - spread, 1 + spread]
    background: float = 1.0  # per-video background direction
    drift: float = 0.5  # slow background drift (norm)
    noise: float = 1.2  # per-step isotropic noise (norm, per stream)
    leak_rate: float = 0.7  # expected uni-modal leaks per video (Poisson)
    leak: float = 1.0  # strength of a leak in its own stream
    echo: float = 0.25  # its share in the other stream
    offset: float = 2.0


DIFFICULTY = Difficulty()


@dataclass(frozen=True)
class Timeline:
    video_id: str
    subset: str
    duration: int | float
    events: tuple[tuple[float, float, int], ...]  # (start, end, label_id)


@dataclass
class SampleUnavSummary:
    out: Path
    videos: dict[str, int]
    feature_files: int
    defects: dict[str, str]


def frequent_classes(annotations: UnavAnnotations, count: int = TIMELINE_CLASSES) -> list[int]:
    counts = Counter(event.label_id for video in annotations.videos.values() for event in video.events)
    return sorted(label for label, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:count])


def select_timelines(annotations: UnavAnnotations, sizes: dict[str, int] = PACKAGED_SIZES) -> tuple[dict[int, str], list[Timeline]]:
    """The selection rule of the module docstring: (class names of the kept classes, timelines)."""
    keep = set(frequent_classes(annotations))
    taken: Counter = Counter()
    chosen = []
    for video in annotations.videos.values():
        if taken[video.subset] >= sizes.get(video.subset, 0) or not video.events or any(e.label_id not in keep for e in video.events):
            continue
        taken[video.subset] += 1
        events = tuple((e.start, e.end, e.label_id) for e in video.events)
        duration = int(video.duration) if float(video.duration).is_integer() else video.duration
        chosen.append(Timeline(video.video_id, video.subset, duration, events))
    return {label: annotations.class_names[label] for label in sorted(keep)}, chosen


def timelines_document(class_names: dict[int, str], timelines: list[Timeline]) -> dict:
    return {
        "source": SOURCE_NOTE,
        "classes": {str(label): name for label, name in class_names.items()},
        "videos": [[t.video_id, t.subset, t.duration, [list(event) for event in t.events]] for t in timelines],
    }


def load_packaged_timelines() -> tuple[dict[int, str], list[Timeline]]:
    data = json.loads(resources.files("mertk.sample_data").joinpath(PACKAGED_TIMELINES).read_text(encoding="utf-8"))
    names = {int(label): name for label, name in data["classes"].items()}
    timelines = [Timeline(v, s, d, tuple((float(a), float(b), int(c)) for a, b, c in events)) for v, s, d, events in data["videos"]]
    return names, timelines


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


STREAMS = (*VISUAL_PARTS, AUDIO_PART)  # (name, dim): rgb, flow, vggish


@dataclass(frozen=True)
class World:
    directions: dict[str, np.ndarray]  # stream -> (NUM_CLASSES, dim) unit rows
    offsets: dict[str, np.ndarray]  # stream -> (dim,)


def make_world(difficulty: Difficulty = DIFFICULTY) -> World:
    rng = np.random.default_rng(WORLD_SEED)
    directions = {name: _unit_rows(rng, NUM_CLASSES, dim) for name, dim in STREAMS}
    offsets = {name: difficulty.offset * _unit_rows(rng, 1, dim)[0] for name, dim in STREAMS}
    return World(directions, offsets)


def video_rng(seed: int, video_id: str, stream: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{video_id}/{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def coverage_t_e(steps: int, events: list[tuple[float, float, int]]) -> np.ndarray:
    """Share of each step's 24-frame window (0.96 s around its centre) inside each event: (steps, events)."""
    centres = step_centres_seconds(steps)[:, None]
    half = 0.48
    starts = np.array([e[0] for e in events])[None, :]
    ends = np.array([e[1] for e in events])[None, :]
    overlap = np.clip(np.minimum(centres + half, ends) - np.maximum(centres - half, starts), 0, None)
    return overlap / (2 * half)


@dataclass(frozen=True)
class Leak:
    stream: str  # visual | audio: where it is seen or heard
    start: float
    end: float
    label_id: int


def plan_leaks(timeline: Timeline, seed: int, classes: list[int], difficulty: Difficulty = DIFFICULTY) -> list[Leak]:
    rng = video_rng(seed, timeline.video_id, "leaks")
    leaks = []
    for _ in range(int(rng.poisson(difficulty.leak_rate))):
        length = float(rng.uniform(1.0, min(10.0, float(timeline.duration))))
        start = float(rng.uniform(0, float(timeline.duration) - length))
        leaks.append(Leak(str(rng.choice(["visual", "audio"])), start, start + length, int(rng.choice(classes))))
    return leaks


def stream_arrays(timeline: Timeline, leaks: list[Leak], world: World, seed: int, difficulty: Difficulty = DIFFICULTY) -> dict[str, np.ndarray]:
    """The three (steps, dim) float32 arrays of one video, before any planted defect."""
    steps = feature_steps(float(timeline.duration))
    events = list(timeline.events)
    strength_rng = video_rng(seed, timeline.video_id, "strength")
    strengths = difficulty.event * (1 + difficulty.event_spread * strength_rng.uniform(-1, 1, len(events)))
    cover_t_e = coverage_t_e(steps, events) * strengths[None, :]
    leak_cover_t_l = coverage_t_e(steps, [(leak.start, leak.end, leak.label_id) for leak in leaks]) if leaks else np.zeros((steps, 0))
    arrays = {}
    for name, dim in STREAMS:
        modality = "audio" if name == AUDIO_PART[0] else "visual"
        rng = video_rng(seed, timeline.video_id, name)
        directions = world.directions[name]
        background = difficulty.background * _unit_rows(rng, 1, dim)[0]
        drift_ends = difficulty.drift * _unit_rows(rng, 2, dim)
        ramp = np.linspace(0, 1, steps)[:, None]
        vectors = world.offsets[name] + background + (1 - ramp) * drift_ends[0] + ramp * drift_ends[1]
        vectors = vectors + cover_t_e @ directions[[e[2] for e in events]]
        if leaks:
            weights = np.array([difficulty.leak if leak.stream == modality else difficulty.leak * difficulty.echo for leak in leaks])
            vectors = vectors + (leak_cover_t_l * weights[None, :]) @ directions[[leak.label_id for leak in leaks]]
        vectors = vectors + rng.standard_normal((steps, dim)) * (difficulty.noise / np.sqrt(dim))
        arrays[name] = vectors.astype(np.float32)
    return arrays


def audio_hop_defect(timeline: Timeline, seed: int) -> tuple[str, int]:
    """How this video's VGGish length departs from I3D's: ("equal" | "shorter" | "longer" | "other_hop", steps)."""
    rng = video_rng(seed, timeline.video_id, "hop")
    draw = rng.random()
    if draw < 0.05:
        return "other_hop", 0
    if draw < 0.2:
        return "shorter", int(rng.integers(1, 3))
    if draw < 0.3:
        return "longer", int(rng.integers(1, 3))
    return "equal", 0


def apply_audio_hop(audio_t_d: np.ndarray, kind: str, steps: int) -> np.ndarray:
    if kind == "shorter":
        return audio_t_d[:-steps] if len(audio_t_d) > steps else audio_t_d
    if kind == "longer":
        return np.concatenate([audio_t_d, np.repeat(audio_t_d[-1:], steps, axis=0)])
    if kind == "other_hop":  # VGGish run with a 0.96 s hop: one row for every three I3D steps
        return audio_t_d[::3].copy()
    return audio_t_d


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> int:
    """Temporary-then-rename without fsync: many files, all regenerable."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return len(data)


def prepare_out_dir(out: Path) -> None:
    """Create `out`; a corpus this module wrote there is replaced, any other content is refused."""
    if out.exists() and not out.is_dir():
        raise SampleUnavError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / INFO_NAME).is_file():
            raise SampleUnavError(f"{out} is not empty and holds no corpus written by `mertk sample-data unav100` ({INFO_NAME}); choose an empty or new folder")
        for name in (ANNOTATION_FOLDER, FEATURE_FOLDER):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        (out / INFO_NAME).unlink()
    (out / ANNOTATION_FOLDER).mkdir(parents=True, exist_ok=True)
    (out / FEATURE_FOLDER).mkdir(parents=True, exist_ok=True)


def annotation_document(timelines: list[Timeline], class_names: dict[int, str]) -> dict:
    database = {}
    for t in timelines:
        events = [{"segment": [start, end], "label": class_names[label], "label_id": label} for start, end, label in t.events]
        database[t.video_id] = {"duration": t.duration, "annotations": events, "subset": t.subset}
    return {"version": "unav100-sample", "database": database}


def make_sample_unav100(
    out: Path | str,
    *,
    seed: int = 0,
    train: int = DEFAULT_SIZES["train"],
    val: int = DEFAULT_SIZES["validation"],
    test: int = DEFAULT_SIZES["test"],
    source: Path | str | None = None,
    progress: bool = True,
) -> SampleUnavSummary:
    """Write the corpus of the module docstring to `out`; same seed (and sizes) -> same bytes."""
    from mertk.console import progress_bar
    from mertk.corpora.unav100 import UnavAnnotationError

    sizes = {"train": train, "validation": val, "test": test}
    if any(n < 0 for n in sizes.values()) or sum(sizes.values()) == 0:
        raise SampleUnavError(f"--train/--val/--test must be >= 0 and not all 0 (got {train}/{val}/{test})")
    if source is None:
        class_names, pool = load_packaged_timelines()
        limits = PACKAGED_SIZES
    else:
        try:
            class_names, pool = select_timelines(read_unav_annotations(source), sizes)
        except UnavAnnotationError as error:
            raise SampleUnavError(str(error)) from None
        limits = sizes
    too_many = [f"{split} {sizes[split]} > {limits[split]}" for split in SUBSETS if sizes[split] > limits[split]]
    if too_many:
        raise SampleUnavError(f"the packaged timelines hold fewer videos than asked ({', '.join(too_many)}); pass --source with the real annotation file for more")
    taken: Counter = Counter()
    timelines = []
    for timeline in pool:
        if taken[timeline.subset] < sizes[timeline.subset]:
            taken[timeline.subset] += 1
            timelines.append(timeline)

    out = Path(out)
    prepare_out_dir(out)
    world = make_world()
    classes = sorted(class_names)
    train_ids = [t.video_id for t in timelines if t.subset == "train"]
    broken = dict(zip(("missing_flow", "truncated_rgb", "non_finite_vggish"), train_ids[3::4][:3])) if len(train_ids) >= 12 else {}
    defects: dict[str, str] = {video_id: kind for kind, video_id in broken.items()}
    leaks_by_video, hops = {}, Counter()
    files = 0
    with progress_bar(len(timelines), "sample-data unav100", enabled=progress) as advance:
        for timeline in timelines:
            leaks = plan_leaks(timeline, seed, classes)
            leaks_by_video[timeline.video_id] = [[leak.stream, round(leak.start, 3), round(leak.end, 3), leak.label_id] for leak in leaks]
            arrays = stream_arrays(timeline, leaks, world, seed)
            hop, steps = audio_hop_defect(timeline, seed)
            hops[hop] += 1
            arrays[AUDIO_PART[0]] = apply_audio_hop(arrays[AUDIO_PART[0]], hop, steps)
            kind = defects.get(timeline.video_id)
            if kind == "non_finite_vggish":
                arrays[AUDIO_PART[0]][len(arrays[AUDIO_PART[0]]) // 2, 5] = np.nan
            for name, array in arrays.items():
                if kind == "missing_flow" and name == "flow":
                    continue
                data = _npy_bytes(array)
                if kind == "truncated_rgb" and name == "rgb":
                    data = data[: len(data) // 2]
                _write(feature_path(out / FEATURE_FOLDER, timeline.video_id, name), data)
                files += 1
            advance(1)
    document = annotation_document(timelines, class_names)
    _write(out / ANNOTATION_FOLDER / ANNOTATION_FILE, (json.dumps(document, indent=1) + "\n").encode("utf-8"))
    counts = {split: taken[split] for split in SUBSETS}
    info = {
        "generator": "mertk sample-data unav100",
        "seed": seed,
        "videos": counts,
        "timelines": SOURCE_NOTE if source is None else f"{source}: {SOURCE_NOTE.split(': ', 1)[1]}",
        "classes": {str(label): name for label, name in class_names.items()},
        "rejected_by_design": defects,
        "vggish_length": dict(sorted(hops.items())),
        "unimodal_leaks": leaks_by_video,
    }
    _write(out / INFO_NAME, (json.dumps(info, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return SampleUnavSummary(out, counts, files, defects)
