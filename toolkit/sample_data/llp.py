"""A deterministic LLP corpus in the real on-disk layout, with the truth written beside it.

What it writes under `out` (a new or empty folder, or one it wrote before: any other content is
refused), from the real annotation rows shipped in the package (toolkit/sample_data/data/llp/,
the real AVVP_*.csv files, gzip-compressed) or from `source`, a folder holding the real files:

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
- `mertk_sample.json`: what wrote the folder (generator, seed, videos per split);
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

import contextlib
import gzip
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mertk.corpora.llp_annotations import (
    DENSE_HEADER,
    DENSE_LABEL_FILES,
    GROUND_TRUTH_FILES,
    LLP_CLASSES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    WEAK_HEADER,
    WEAK_LABEL_FILES,
    WeakLabel,
    read_dense_labels,
    read_weak_labels,
)
from mertk.corpora.llp_features import CLAP_AUDIO, CLIP_VISUAL, R2PLUS1D, RES152, VGGISH, FeaturePart
from mertk.migration.anchors import TEXT_ANCHOR_FILE
from mertk.shards.io import write_bytes_atomic
from mertk.sample_data.folder import INFO_NAME, SampleDataError

PACKAGED_LLP = Path(__file__).resolve().parent / "data" / "llp"  # the real AVVP_*.csv files, gzipped
GENERATOR = "mertk sample-data llp"
WORLD_SEED = 20_240_611  # fixes class directions: the "extractors" of every generated corpus
SPLIT_FILES = {split: WEAK_LABEL_FILES[split] for split in ("train", "val", "test")}
FULL_FILE = WEAK_LABEL_FILES["full"]
EVAL_FILES = DENSE_LABEL_FILES
REAL_SPLIT_SIZES = {"train": 10_000, "val": 649, "test": 1_200}
DEFAULT_SIZES = {"train": 200, "val": 60, "test": 60}


@dataclass(frozen=True)
class FeatureSpec:
    """One extractor: its on-disk layout (the reader's FeaturePart), its modality and value range."""

    part: FeaturePart
    modality: str  # "audio" | "visual"
    language_aligned: bool = False
    non_negative: bool = False

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def folder(self) -> str:
        return self.part.folder

    @property
    def dim(self) -> int:
        return self.part.dim

    @property
    def frames(self) -> int:
        """Rows per file (10, or 80 for res152 at 8 fps)."""
        return self.part.rows


FEATURE_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(VGGISH, "audio"),
    FeatureSpec(RES152, "visual", non_negative=True),
    FeatureSpec(R2PLUS1D, "visual"),
    FeatureSpec(CLIP_VISUAL, "visual", language_aligned=True),
    FeatureSpec(CLAP_AUDIO, "audio", language_aligned=True),
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
class LlpSampleSummary:
    """What `make_sample_llp` wrote: the folder, videos per split, feature files."""

    out: Path
    videos: dict[str, int]
    feature_files: int


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


def write_corpus_files(out: Path, files: dict[str, bytes]) -> None:
    """The corpus' small files into `out`, after check_out_dir: the info file first, so that a
    folder this generator started is recognised as its own if the run stops half-way. No fsync:
    the files are regenerable from the seed."""
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / INFO_NAME, files[INFO_NAME], durable=False)
    for name, data in files.items():
        write_bytes_atomic(out / name, data, durable=False)


def write_video_features(out: Path, video: PlantedVideo, world: World, seed: int, specs=FEATURE_SPECS) -> int:
    for spec in specs:
        folder = out / spec.folder
        vectors_t_d = segment_vectors(spec, video, world, seed)
        array = feature_array(spec, vectors_t_d, seed, video.weak.filename)
        write_bytes_atomic(folder / f"{video.weak.video_id}.npy", _npy_bytes(array), durable=False)
    return len(specs)


# ---------------------------------------------------------------- corpus


def split_sizes(train: int, val: int, test: int, videos: int | None) -> dict[str, int]:
    """Videos per split; `videos` (total) overrides with the real proportions (11849 = all)."""
    if videos is not None:
        total_real = sum(REAL_SPLIT_SIZES.values())
        if not 1 <= videos <= total_real:
            raise SampleDataError(f"--videos must be between 1 and {total_real}, got {videos}")
        val_n = round(videos * REAL_SPLIT_SIZES["val"] / total_real)
        test_n = round(videos * REAL_SPLIT_SIZES["test"] / total_real)
        return {"train": videos - val_n - test_n, "val": val_n, "test": test_n}
    sizes = {"train": train, "val": val, "test": test}
    for split, size in sizes.items():
        if not 0 <= size <= REAL_SPLIT_SIZES[split]:
            raise SampleDataError(f"--{split} must be between 0 and {REAL_SPLIT_SIZES[split]}, got {size}")
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


@contextlib.contextmanager
def annotation_source(source: Path | str | None) -> Iterator[Path]:
    """A folder holding the real AVVP_*.csv files: `source`, or the package's copy unpacked."""
    if source is not None:
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="mertk-llp-") as folder:
        for packed in sorted(PACKAGED_LLP.glob("*.csv.gz")):
            (Path(folder) / packed.name[: -len(".gz")]).write_bytes(gzip.decompress(packed.read_bytes()))
        yield Path(folder)


def plan_corpus(source: Path, seed: int, sizes: dict[str, int]) -> list[PlantedVideo]:
    """Choose videos and their planted timelines from the real annotation files in `source`."""
    for name in (*SPLIT_FILES.values(), *EVAL_FILES.values()):
        if not (source / name).is_file():
            raise SampleDataError(f"{source / name}: not found (--source must hold the real LLP annotation files)")
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


def _text_file(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def annotation_files(source: Path, videos: Sequence[PlantedVideo]) -> dict[str, bytes]:
    """{file name: content} of the CSVs: real rows of the chosen videos, and the planted truth."""
    files: dict[str, bytes] = {}
    chosen = {video.weak.filename for video in videos}
    for split, name in SPLIT_FILES.items():
        header, lines = _data_lines(source / name)
        files[name] = _text_file([header, *(line for line in lines if line.split("\t", 1)[0] in chosen)])
    header, lines = _data_lines(source / FULL_FILE) if (source / FULL_FILE).is_file() else (None, [])
    if header is None:
        header = "\t".join(WEAK_HEADER)
        lines = [line for name in SPLIT_FILES.values() for line in _data_lines(source / name)[1]]
    files[FULL_FILE] = _text_file([header, *(line for line in lines if line.split("\t", 1)[0] in chosen)])
    every_val_test = {
        line.split("\t", 1)[0]
        for split in ("val", "test")
        for line in _data_lines(source / SPLIT_FILES[split])[1]
    }
    for modality, name in EVAL_FILES.items():
        header, lines = _data_lines(source / name)
        # Rows of chosen videos, and the real rows that name no video at all (a real defect).
        kept = [line for line in lines if line.split("\t", 1)[0] in chosen or line.split("\t", 1)[0] not in every_val_test]
        files[name] = _text_file([header, *kept])
    for modality, name in GROUND_TRUTH_FILES.items():
        lines = ["\t".join(DENSE_HEADER)]
        for video in videos:
            matrix_c_t = video.audio_c_t if modality == "audio" else video.visual_c_t
            lines += dense_rows(video.weak.filename, matrix_c_t)
        files[name] = _text_file(lines)
    return files


def text_anchor_bytes(world: World) -> bytes:
    from safetensors.numpy import save

    tensors = {modality: np.ascontiguousarray(anchors, dtype=np.float32) for modality, anchors in sorted(world.text_anchors.items())}
    return save(tensors, metadata={"classes": json.dumps(list(LLP_CLASSES))})


def _written_here(out: Path) -> bool:
    """Whether `out` holds this generator's info file."""
    try:
        info = json.loads((out / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR


def check_out_dir(out: Path, files: dict[str, bytes]) -> None:
    """Refuse a folder with content this generator did not write (SampleDataError naming it).

    Accepted: a new or empty folder; one holding this generator's info file; or one whose every
    entry is a file this run would write with exactly the same bytes (a committed copy of the
    annotation files). Pointed at a real LLP folder, nothing is overwritten.
    """
    if out.exists() and not out.is_dir():
        raise SampleDataError(f"{out}: exists and is not a folder")
    if not out.is_dir() or _written_here(out):
        return
    for entry in sorted(out.iterdir()):
        if entry.name not in files or not entry.is_file() or entry.read_bytes() != files[entry.name]:
            raise SampleDataError(
                f"{out}: holds {entry.name}, which mertk sample-data llp did not write; "
                "choose a new or empty folder (nothing was written)"
            )


def make_sample_llp(
    out: Path | str,
    *,
    seed: int = 0,
    train: int = DEFAULT_SIZES["train"],
    val: int = DEFAULT_SIZES["val"],
    test: int = DEFAULT_SIZES["test"],
    videos: int | None = None,
    source: Path | str | None = None,
    features: bool = True,
    progress: bool = True,
) -> LlpSampleSummary:
    """Write the sample LLP corpus to `out` (see the module docstring); same seed -> same bytes.

    `source`: a folder with the real LLP annotation files (default: the copy in the package).
    """
    from mertk.console import progress_bar

    out = Path(out)
    sizes = split_sizes(train, val, test, videos)
    with annotation_source(source) as folder:
        planted = plan_corpus(folder, seed, sizes)
        files = annotation_files(folder, planted)
    world = make_world()
    files[TEXT_ANCHOR_FILE] = text_anchor_bytes(world)
    info = {"generator": GENERATOR, "seed": seed, "videos": {split: sizes[split] for split in SPLIT_FILES}}
    files[INFO_NAME] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    check_out_dir(out, files)
    write_corpus_files(out, files)
    written = 0
    if features:
        for spec in FEATURE_SPECS:
            (out / spec.folder).mkdir(parents=True, exist_ok=True)
        with progress_bar(len(planted), "sample-data llp: features", enabled=progress) as advance:
            for video in planted:
                written += write_video_features(out, video, world, seed)
                advance(1)
    counts = {split: sum(1 for v in planted if v.weak.split == split) for split in SPLIT_FILES}
    return LlpSampleSummary(out, counts, written)
