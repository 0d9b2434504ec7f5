"""A deterministic LLP corpus in the real on-disk layout, with the truth written beside it.

What it writes under `out`:

- the weak-label CSVs (`AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv`,
  `AVVP_dataset_full.csv`) with real filenames and real weak labels, copied verbatim from the
  real files (a prefix of each split, in file order);
- `AVVP_eval_audio.csv` / `AVVP_eval_visual.csv`: the real dense rows of the chosen val/test
  videos, verbatim, plus the real rows that name no video (the real files' defects are kept);
- `ground_truth_audio.csv` / `ground_truth_visual.csv`: the planted timeline of *every* video
  (train included) in the eval layout. For val/test this is the real dense annotation (rows with
  onset >= offset mark nothing); train timelines are drawn, per weak class, from the real
  (audio row, visual row) patterns of that class in val/test, so they have the real statistics
  (audio-only, visual-only and audio-visual events, partial durations);
- `text_anchors.safetensors`: the class text anchors of the language-aligned features
  (tensors `audio` (25, 768) for CLAP, `visual` (25, 768) for CLIP; metadata `classes`);
- the features, float32, in the real shapes: `feats/vggish/<id>.npy` (10, 128),
  `feats/res152/<id>.npy` (80, 2048, non-negative), `feats/r2plus1d_18/<id>.npy` (10, 512),
  `CLIP/features/<id>.npy` (10, 768), `CLAP/features/<id>.npy` (10, 768).

How a segment's feature is made (one modality, one extractor): a corpus-wide offset, plus a
video background direction, plus for each event present in that modality and segment its
class direction (per extractor; fixed by a world seed, so corpora made with other `--seed`s
share the semantics, as features of one real extractor do), plus a weak leak of events that
are present only in the *other* modality at that second, plus now and then a distractor
segment carrying a class that is not in the weak label, plus noise. Language-aligned class
directions sit near (not on) the text anchors. res152 has 8 frames a segment around the
segment vector, kept non-negative.

Every video's content depends only on (seed, filename), so any subset is reproducible and a
large corpus is streamed to disk one video at a time.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mertk.corpora.llp_annotations import (
    DENSE_HEADER,
    LLP_CLASSES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    WeakLabel,
    read_dense_labels,
    read_weak_labels,
)

REAL_LLP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llp"
WORLD_SEED = 20_240_611  # fixes class directions: the "extractors" of every generated corpus
TEXT_ANCHOR_FILE = "text_anchors.safetensors"
GROUND_TRUTH_FILES = {"audio": "ground_truth_audio.csv", "visual": "ground_truth_visual.csv"}
SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
FULL_FILE = "AVVP_dataset_full.csv"
EVAL_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
REAL_SPLIT_SIZES = {"train": 10_000, "val": 649, "test": 1_200}
DEFAULT_SIZES = {"train": 200, "val": 60, "test": 60}


@dataclass(frozen=True)
class FeatureSpec:
    """One extractor's on-disk layout and how hard its features are."""

    name: str
    folder: str
    modality: str  # "audio" | "visual"
    dim: int
    frames: int  # rows per file (10, or 80 for res152 at 8 fps)
    language_aligned: bool = False
    non_negative: bool = False


FEATURE_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("vggish", "feats/vggish", "audio", 128, 10),
    FeatureSpec("res152", "feats/res152", "visual", 2048, 80, non_negative=True),
    FeatureSpec("r2plus1d_18", "feats/r2plus1d_18", "visual", 512, 10),
    FeatureSpec("clip", "CLIP/features", "visual", 768, 10, language_aligned=True),
    FeatureSpec("clap", "CLAP/features", "audio", 768, 10, language_aligned=True),
)


@dataclass(frozen=True)
class Difficulty:
    """Norms of the parts of a segment vector (the class direction has norm `event`)."""

    event: float = 1.0
    event_spread: float = 0.3  # per-video loudness in event * [1 - spread, 1 + spread]
    background: float = 1.0  # per-video background direction
    noise: float = 0.8  # per-segment isotropic noise (norm)
    leak: float = 0.3  # fraction of an other-modality-only event that leaks into this modality
    distractor_rate: float = 0.12  # chance a segment carries a class outside the weak label
    distractor: float = 0.8
    offset: float = 2.0  # corpus-wide offset vector (features are not centred)
    text_gap: float = 1.0  # language-aligned: direction = normalise(text anchor + gap * random)


DIFFICULTY = Difficulty()


@dataclass(frozen=True)
class PlantedVideo:
    """One generated video: its weak label and the planted (25, 10) timelines per modality."""

    weak: WeakLabel
    audio_c_t: np.ndarray
    visual_c_t: np.ndarray


@dataclass(frozen=True)
class SampleLlpSummary:
    out: Path
    videos: dict[str, int]
    feature_files: int


class SampleLlpError(ValueError):
    """Arguments or source files the generator cannot use."""


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    matrix = rng.standard_normal((rows, dim))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@dataclass(frozen=True)
class World:
    """Class directions, offsets and text anchors of every extractor (independent of --seed)."""

    directions: dict[str, np.ndarray]  # name -> (25, dim) unit rows
    offsets: dict[str, np.ndarray]  # name -> (dim,)
    text_anchors: dict[str, np.ndarray]  # modality -> (25, 768) unit rows, language-aligned only


def make_world(difficulty: Difficulty = DIFFICULTY) -> World:
    directions, offsets, anchors = {}, {}, {}
    for number, spec in enumerate(FEATURE_SPECS):
        rng = np.random.default_rng([WORLD_SEED, number])
        if spec.language_aligned:
            text = _unit_rows(rng, NUM_CLASSES, spec.dim)
            mixed = text + difficulty.text_gap * _unit_rows(rng, NUM_CLASSES, spec.dim)
            directions[spec.name] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
            anchors[spec.modality] = text
        else:
            directions[spec.name] = _unit_rows(rng, NUM_CLASSES, spec.dim)
        offsets[spec.name] = difficulty.offset * _unit_rows(rng, 1, spec.dim)[0]
    return World(directions, offsets, anchors)


def video_rng(seed: int, filename: str, stream: str) -> np.random.Generator:
    """The generator of one video and purpose: depends on (seed, filename, stream) only."""
    digest = hashlib.sha256(f"{seed}\0{filename}\0{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# ---------------------------------------------------------------- timelines


def timeline_patterns(dense_audio_v_c_t: np.ndarray, dense_visual_v_c_t: np.ndarray, weak: Sequence[WeakLabel]):
    """Real (audio row, visual row) patterns of each weak class in annotated videos.

    Returns {class index: [(audio_t, visual_t), ...]} plus the list of all patterns, skipping
    (video, class) pairs whose class is absent from both dense rows.
    """
    by_class: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    every: list[tuple[np.ndarray, np.ndarray]] = []
    for index, record in enumerate(weak):
        for class_index in record.label_indices:
            audio_t = dense_audio_v_c_t[index, class_index]
            visual_t = dense_visual_v_c_t[index, class_index]
            if audio_t.any() or visual_t.any():
                by_class.setdefault(class_index, []).append((audio_t, visual_t))
                every.append((audio_t, visual_t))
    return by_class, every


def synthesise_timeline(record: WeakLabel, seed: int, by_class, every) -> tuple[np.ndarray, np.ndarray]:
    """(audio_c_t, visual_c_t) for a train video: one real pattern of its class per weak class."""
    rng = video_rng(seed, record.filename, "timeline")
    audio_c_t = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    visual_c_t = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    for class_index in record.label_indices:
        pool = by_class.get(class_index) or every
        audio_t, visual_t = pool[int(rng.integers(len(pool)))]
        audio_c_t[class_index] = audio_t
        visual_c_t[class_index] = visual_t
    return audio_c_t, visual_c_t


# ---------------------------------------------------------------- features


def segment_vectors(
    spec: FeatureSpec, video: PlantedVideo, world: World, seed: int, difficulty: Difficulty = DIFFICULTY
) -> np.ndarray:
    """(10, dim) float64 segment vectors of one extractor for one video."""
    rng = video_rng(seed, video.weak.filename, spec.name)
    own_c_t, other_c_t = (
        (video.audio_c_t, video.visual_c_t) if spec.modality == "audio" else (video.visual_c_t, video.audio_c_t)
    )
    directions = world.directions[spec.name]
    loudness_c = difficulty.event * (1 + difficulty.event_spread * rng.uniform(-1, 1, NUM_CLASSES))
    jitter_t_c = rng.uniform(0.85, 1.15, (NUM_SEGMENTS, NUM_CLASSES))
    weights_t_c = own_c_t.T * loudness_c * jitter_t_c
    leak_t_c = (other_c_t & ~own_c_t).T * loudness_c * difficulty.leak
    background = difficulty.background * _unit_rows(rng, 1, spec.dim)[0]
    outside = np.flatnonzero(~video.weak.label_vector())
    distract_t = rng.random(NUM_SEGMENTS) < difficulty.distractor_rate
    distract_class_t = outside[rng.integers(len(outside), size=NUM_SEGMENTS)]
    distractor_t_c = np.zeros((NUM_SEGMENTS, NUM_CLASSES))
    distractor_t_c[np.flatnonzero(distract_t), distract_class_t[distract_t]] = difficulty.distractor
    noise_t_d = rng.standard_normal((NUM_SEGMENTS, spec.dim)) * (difficulty.noise / np.sqrt(spec.dim))
    return (
        world.offsets[spec.name]
        + background
        + (weights_t_c + leak_t_c + distractor_t_c) @ directions
        + noise_t_d
    )


def feature_array(spec: FeatureSpec, vectors_t_d: np.ndarray, seed: int, filename: str) -> np.ndarray:
    """The file content: (frames, dim) float32 in the extractor's value range."""
    if spec.frames == NUM_SEGMENTS:
        return vectors_t_d.astype(np.float32)
    # res152: 8 frames a second around the segment vector, shifted and clipped to be >= 0 like
    # post-ReLU ResNet activations; the mean over each group of 8 gives the segment back.
    rng = video_rng(seed, filename, spec.name + ":frames")
    per_segment = spec.frames // NUM_SEGMENTS
    frames_f_d = np.repeat(vectors_t_d, per_segment, axis=0)
    frames_f_d += rng.standard_normal(frames_f_d.shape) * (0.5 / np.sqrt(spec.dim))
    return np.maximum(0.5 + 0.1 * frames_f_d * np.sqrt(spec.dim) / 4, 0).astype(np.float32)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    """Temporary-then-rename without fsync: thousands of small files, regenerable."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_video_features(out: Path, video: PlantedVideo, world: World, seed: int, specs=FEATURE_SPECS) -> int:
    for spec in specs:
        folder = out / spec.folder
        vectors_t_d = segment_vectors(spec, video, world, seed)
        array = feature_array(spec, vectors_t_d, seed, video.weak.filename)
        _write_file(folder / f"{video.weak.video_id}.npy", _npy_bytes(array))
    return len(specs)


# ---------------------------------------------------------------- corpus


def split_sizes(train: int, val: int, test: int, videos: int | None) -> dict[str, int]:
    """Videos per split; `videos` (total) overrides with the real proportions (11849 = all)."""
    if videos is not None:
        total_real = sum(REAL_SPLIT_SIZES.values())
        if not 1 <= videos <= total_real:
            raise SampleLlpError(f"--videos must be between 1 and {total_real}, got {videos}")
        val_n = round(videos * REAL_SPLIT_SIZES["val"] / total_real)
        test_n = round(videos * REAL_SPLIT_SIZES["test"] / total_real)
        return {"train": videos - val_n - test_n, "val": val_n, "test": test_n}
    sizes = {"train": train, "val": val, "test": test}
    for split, size in sizes.items():
        if not 0 <= size <= REAL_SPLIT_SIZES[split]:
            raise SampleLlpError(f"--{split} must be between 0 and {REAL_SPLIT_SIZES[split]}, got {size}")
    return sizes


def _data_lines(path: Path) -> tuple[str, list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], lines[1:]


def _runs(row_t: np.ndarray) -> Iterator[tuple[int, int]]:
    start = None
    for segment, on in enumerate(list(row_t) + [False]):
        if on and start is None:
            start = segment
        elif not on and start is not None:
            yield start, segment
            start = None


def dense_rows(filename: str, matrix_c_t: np.ndarray) -> list[str]:
    """Eval-layout lines (filename, onset, offset exclusive, class) of one (25, 10) matrix."""
    return [
        f"{filename}\t{onset}\t{offset}\t{LLP_CLASSES[class_index]}"
        for class_index in range(NUM_CLASSES)
        for onset, offset in _runs(matrix_c_t[class_index])
    ]


def plan_corpus(source: Path, seed: int, sizes: dict[str, int]):
    """Choose videos and their planted timelines; returns (videos, selected source lines)."""
    for name in (*SPLIT_FILES.values(), *EVAL_FILES.values()):
        if not (source / name).is_file():
            raise SampleLlpError(f"{source / name}: not found (the real LLP annotation files are needed)")
    weak_all = {split: read_weak_labels(source / name, split) for split, name in SPLIT_FILES.items()}
    eval_weak = weak_all["val"] + weak_all["test"]
    dense = read_dense_labels(source / EVAL_FILES["audio"], source / EVAL_FILES["visual"], eval_weak)
    by_class, every = timeline_patterns(dense.audio_v_c_t, dense.visual_v_c_t, eval_weak)
    videos: list[PlantedVideo] = []
    for split in ("train", "val", "test"):
        for record in weak_all[split][: sizes[split]]:
            if split == "train":
                audio_c_t, visual_c_t = synthesise_timeline(record, seed, by_class, every)
            else:
                audio_c_t, visual_c_t = dense.matrices(record.filename)
            videos.append(PlantedVideo(record, audio_c_t, visual_c_t))
    return videos


def write_annotations(out: Path, source: Path, videos: Sequence[PlantedVideo]) -> None:
    chosen = {video.weak.filename for video in videos}
    for split, name in SPLIT_FILES.items():
        header, lines = _data_lines(source / name)
        kept = [line for line in lines if line.split("\t", 1)[0] in chosen]
        _write_file(out / name, ("\n".join([header, *kept]) + "\n").encode())
    header, lines = _data_lines(source / FULL_FILE) if (source / FULL_FILE).is_file() else (None, [])
    if header is None:
        header = "filename\tevent_labels"
        lines = [line for name in SPLIT_FILES.values() for line in _data_lines(source / name)[1]]
    kept = [line for line in lines if line.split("\t", 1)[0] in chosen]
    _write_file(out / FULL_FILE, ("\n".join([header, *kept]) + "\n").encode())
    every_val_test = {
        line.split("\t", 1)[0]
        for split in ("val", "test")
        for line in _data_lines(source / SPLIT_FILES[split])[1]
    }
    for modality, name in EVAL_FILES.items():
        header, lines = _data_lines(source / name)
        # Rows of chosen videos, and the real rows that name no video at all (a real defect).
        kept = [
            line
            for line in lines
            if line.split("\t", 1)[0] in chosen or line.split("\t", 1)[0] not in every_val_test
        ]
        _write_file(out / name, ("\n".join([header, *kept]) + "\n").encode())
    for modality, name in GROUND_TRUTH_FILES.items():
        lines = ["\t".join(DENSE_HEADER)]
        for video in videos:
            matrix_c_t = video.audio_c_t if modality == "audio" else video.visual_c_t
            lines += dense_rows(video.weak.filename, matrix_c_t)
        _write_file(out / name, ("\n".join(lines) + "\n").encode())


def write_text_anchors(path: Path, world: World) -> None:
    from safetensors.numpy import save

    tensors = {modality: np.ascontiguousarray(anchors, dtype=np.float32) for modality, anchors in sorted(world.text_anchors.items())}
    _write_file(path, save(tensors, metadata={"classes": json.dumps(list(LLP_CLASSES))}))


def make_sample_llp(
    out: Path | str,
    *,
    seed: int = 0,
    train: int = DEFAULT_SIZES["train"],
    val: int = DEFAULT_SIZES["val"],
    test: int = DEFAULT_SIZES["test"],
    videos: int | None = None,
    source: Path | str = REAL_LLP,
    features: bool = True,
    progress: bool = True,
) -> SampleLlpSummary:
    """Write the sample LLP corpus to `out` (see the module docstring); same seed -> same bytes."""
    from mertk.console import progress_bar

    out, source = Path(out), Path(source)
    sizes = split_sizes(train, val, test, videos)
    planted = plan_corpus(source, seed, sizes)
    out.mkdir(parents=True, exist_ok=True)
    write_annotations(out, source, planted)
    world = make_world()
    write_text_anchors(out / TEXT_ANCHOR_FILE, world)
    files = 0
    if features:
        for spec in FEATURE_SPECS:
            (out / spec.folder).mkdir(parents=True, exist_ok=True)
        with progress_bar(len(planted), "sample-data llp: features", enabled=progress) as advance:
            for video in planted:
                files += write_video_features(out, video, world, seed)
                advance(1)
    counts = {split: sum(1 for v in planted if v.weak.split == split) for split in SPLIT_FILES}
    return SampleLlpSummary(out, counts, files)
