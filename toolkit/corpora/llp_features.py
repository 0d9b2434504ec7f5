"""Reader of LLP segment features as they lie on disk, and of the videos they belong to.

Two feature sets, chosen with `--features`:

- `han` (the layout of the HAN baseline): audio `feats/vggish/<id>.npy` (10, 128); visual
  `feats/res152/<id>.npy` (80, 2048, 8 frames a second) pooled to (10, 2048) by the mean over
  each group of 8 frames, optionally followed by `feats/r2plus1d_18/<id>.npy` (10, 512).
- `clip` (language-aligned, the layout of later work): visual `CLIP/features/<id>.npy`
  (10, 768), audio `CLAP/features/<id>.npy` (10, 768).

A file that is missing, truncated, not a .npy array, of the wrong shape, not floating point or
holding a non-finite value raises FeatureFileError, whose message names the file: the caller
rejects that video and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertk.errors import InputError
from mertk.corpora.llp_annotations import (
    NUM_SEGMENTS,
    BadRow,
    LlpAnnotationError,
    WeakLabel,
    llp_annotation_files,
    read_weak_labels,
)

FEATURE_SETS = ("han", "clip")
SPLITS = ("train", "val", "test")


class FeatureFileError(InputError):
    """One feature file cannot be used; `file` is its path, `reason` what is wrong."""

    def __init__(self, file: Path | str, reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{file}: {reason}")


@dataclass(frozen=True)
class FeaturePart:
    """One extractor's files: `folder/<id>.npy` of shape (rows, dim), pooled to 10 rows."""

    name: str
    folder: str
    rows: int
    dim: int


VGGISH = FeaturePart("vggish", "feats/vggish", 10, 128)
RES152 = FeaturePart("res152", "feats/res152", 80, 2048)
R2PLUS1D = FeaturePart("r2plus1d_18", "feats/r2plus1d_18", 10, 512)
CLIP_VISUAL = FeaturePart("clip", "CLIP/features", 10, 768)
CLAP_AUDIO = FeaturePart("clap", "CLAP/features", 10, 768)


@dataclass(frozen=True)
class FeatureLayout:
    """Which parts make each modality's segment embedding (concatenated in this order)."""

    name: str
    audio: tuple[FeaturePart, ...]
    visual: tuple[FeaturePart, ...]
    language_aligned: bool

    def parts(self, modality: str) -> tuple[FeaturePart, ...]:
        return self.audio if modality == "audio" else self.visual

    def dim(self, modality: str) -> int:
        return sum(part.dim for part in self.parts(modality))

    def files(self, root: Path | str, video_id: str) -> list[Path]:
        return [Path(root) / part.folder / f"{video_id}.npy" for part in (*self.audio, *self.visual)]


def feature_layout(features: str, r2plus1d: bool = True) -> FeatureLayout:
    """The layout of `--features han|clip`; `r2plus1d` appends r2plus1d_18 to HAN's visual part."""
    if features == "han":
        visual = (RES152, R2PLUS1D) if r2plus1d else (RES152,)
        return FeatureLayout("han", (VGGISH,), visual, language_aligned=False)
    if features == "clip":
        return FeatureLayout("clip", (CLAP_AUDIO,), (CLIP_VISUAL,), language_aligned=True)
    raise ValueError(f"unknown feature set {features!r}; choose one of {', '.join(FEATURE_SETS)}")


@dataclass(frozen=True)
class SegmentEmbeddings:
    """One video's per-second embeddings: audio_t_d (10, Da), visual_t_d (10, Dv), float32."""

    video_id: str
    audio_t_d: np.ndarray
    visual_t_d: np.ndarray

    def modality(self, modality: str) -> np.ndarray:
        return self.audio_t_d if modality == "audio" else self.visual_t_d


def read_feature_file(path: Path | str, rows: int | None, dim: int, check_finite: bool = True) -> np.ndarray:
    """A (rows, dim) float32 array from a .npy file, or FeatureFileError naming the file.

    `rows=None` takes any positive number of rows (time steps of an untrimmed video).

    `check_finite=False` leaves the finiteness check to the caller (see `check_finite_values`).
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(path, "missing feature file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FeatureFileError(path, f"truncated or not a .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise FeatureFileError(path, "not a single .npy array")
    if rows is None and (array.ndim != 2 or array.shape[1] != dim or array.shape[0] == 0):
        raise FeatureFileError(path, f"shape {tuple(array.shape)}, expected (steps > 0, {dim})")
    if rows is not None and array.shape != (rows, dim):
        raise FeatureFileError(path, f"shape {tuple(array.shape)}, expected ({rows}, {dim})")
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureFileError(path, f"dtype {array.dtype}, expected floating point")
    array = array.astype(np.float32, copy=False)
    if check_finite:
        check_finite_values(path, array, array)
    return array


def check_finite_values(path: Path | str, summary: np.ndarray, array: np.ndarray) -> None:
    """Raise FeatureFileError if `array` holds NaN or infinity.

    `summary` is `array` or anything computed from it that a non-finite value would spread to
    (e.g. its pooled means): one cheap sum over it decides; only a suspicious sum (NaN, inf, or
    a float32 overflow) triggers the exact element-wise check that names the first bad row.
    """
    if np.isfinite(summary.sum()):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.size(finite) - np.count_nonzero(finite))
        first_row = int(np.argwhere(~finite)[0][0])
        raise FeatureFileError(path, f"{bad} non-finite values (first in row {first_row})")


def pool_to_segments(frames_f_d: np.ndarray, segments: int = NUM_SEGMENTS) -> np.ndarray:
    """(frames, dim) -> (segments, dim): mean over consecutive equal groups (80 -> 10: groups of 8)."""
    frames, dim = frames_f_d.shape
    if frames % segments:
        raise ValueError(f"{frames} frames do not split into {segments} equal segments")
    return frames_f_d.reshape(segments, frames // segments, dim).mean(axis=1, dtype=np.float32)


def _read_modality(root: Path, video_id: str, parts: tuple[FeaturePart, ...]) -> np.ndarray:
    pieces = []
    for part in parts:
        path = root / part.folder / f"{video_id}.npy"
        array = read_feature_file(path, part.rows, part.dim, check_finite=False)
        pooled = pool_to_segments(array) if part.rows != NUM_SEGMENTS else array
        check_finite_values(path, pooled, array)  # NaN / inf survive the pooling mean
        pieces.append(pooled)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


def read_segment_embeddings(root: Path | str, video_id: str, layout: FeatureLayout) -> SegmentEmbeddings:
    """Both modalities of one video; FeatureFileError (naming the file) on any unusable file."""
    root = Path(root)
    return SegmentEmbeddings(
        video_id, _read_modality(root, video_id, layout.audio), _read_modality(root, video_id, layout.visual)
    )


@dataclass(frozen=True)
class LlpListing:
    """What the LLP reader returns, like every corpus reader: usable videos in file order, and the
    annotation rows it could not use, each a rejection naming the file, the line and the reason."""

    root: Path
    videos: list[WeakLabel]
    rejections: list["Rejection"]  # mertk.shards.manifest.Rejection


def read_llp_videos(root: Path | str, splits: tuple[str, ...] = SPLITS) -> LlpListing:
    """The videos of the weak-label CSVs of `splits` under `root`, in file order, and rejected rows.

    A video listed in more than one split is kept in the first and its later rows are rejected.
    Raises LlpAnnotationError when none of the split files exists.
    """
    from mertk.shards.manifest import Rejection  # here: pyarrow stays out of the CLI's start-up

    files = llp_annotation_files(root)
    present = [split for split in splits if split in files]
    if not present:
        raise LlpAnnotationError(
            f"{root}: none of the weak-label files of {', '.join(splits)} found (AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv)"
        )
    videos: list[WeakLabel] = []
    bad: list[BadRow] = []
    seen: dict[str, str] = {}
    for split in present:
        for record in read_weak_labels(files[split], split, rejections=bad):
            if record.filename in seen:
                bad.append(BadRow(str(files[split]), 0, f"{record.filename}: already listed in split {seen[record.filename]}"))
                continue
            seen[record.filename] = split
            videos.append(record)
    return LlpListing(Path(root), videos, [Rejection(f"{row.file}:{row.line}", row.reason, row.file) for row in bad])


def npy_header(rows: int, dim: int) -> bytes:
    """The header bytes `np.save` writes for a C-ordered little-endian float32 (rows, dim) array.

    A feature file that starts with exactly these bytes and has rows * dim * 4 bytes after them
    holds a (rows, dim) float32 array: the block reader's fast path (mertk.execution.blocks).
    """
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(np.zeros((rows, dim), dtype="<f4")))
    return header.getvalue()


def update_with_file_stats(digest, paths) -> None:
    """Feed each file's name, size and modification time (or `missing`) into a hashlib digest:
    the key of a packed-features cache, which a changed or replaced file invalidates."""
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"{path.name}:missing".encode())
