"""Migrated pseudo-labels of a (pre-training) corpus -> the generator trainer's packed arrays.

Labels come only from `avvp_pseudo_label.v1` directories, opened with
mertk.shards.dataset.open_shards (the one manifest check). Each directory's manifest names the
corpus its videos come from (`target_root` for a `--target` output, else `llp`) and the features
the labels were migrated on (`features`, `r2plus1d`); the generator trains on those same
features, read once per video with mertk.corpora.llp_features and packed into two float32
arrays under `cache_dir/generator-<key>/` (later runs read the packed copy). The corpus's weak
labels are used where it has weak-label CSVs.

Rows of the `train` and `target` splits are training data; `val` / `test` rows (an LLP output's
own evaluation videos) are skipped and counted, as are videos that an `exclude` LLP folder lists
in its val or test CSVs (a pre-training corpus that shares videos with the evaluation set).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES, NUM_CLASSES, NUM_SEGMENTS
from mertk.corpora.llp_features import (
    FeatureFileError,
    FeatureLayout,
    feature_layout,
    read_llp_videos,
    read_segment_embeddings,
    update_with_file_stats,
)
from mertk.errors import InputError
from mertk.shards.io import file_sha256, write_bytes_atomic
from mertk.shards.manifest import Rejection

TRAINING_SPLITS = ("train", "target")
PRODUCED_BY = "`mertk migrate-labels` (OUT/avvp_pseudo, or its --target output)"


class GeneratorDataError(InputError):
    """Label directories or a corpus the generator cannot train on; the message names the file."""


@dataclass(frozen=True)
class LabelSource:
    """One --labels directory: where its videos' features are and what it holds."""

    directory: str
    corpus: str
    manifest_sha256: str
    videos: int
    skipped_evaluation_videos: int  # val / test rows not used for training


@dataclass
class GeneratorData:
    """Packed training data, one row per video (in label-directory order, then shard order)."""

    features: str
    r2plus1d: bool
    layout: FeatureLayout
    filenames: list[str]
    corpora: list[str]
    audio_v_t_d: np.ndarray  # float32 (videos, 10, Da)
    visual_v_t_d: np.ndarray  # float32 (videos, 10, Dv)
    hard_v_m_t_c: np.ndarray  # float32 0/1
    soft_v_m_t_c: np.ndarray  # float32 in [0, 1]
    weak_v_c: np.ndarray  # float32 0/1
    has_weak_v: np.ndarray  # bool
    sources: list[LabelSource]
    rejections: list[Rejection] = field(default_factory=list)
    excluded: int = 0
    key: str = ""

    def parts(self) -> dict[str, list[str]]:
        return {m: [part.name for part in self.layout.parts(m)] for m in MODALITIES}

    def dims(self) -> dict[str, int]:
        return {m: self.layout.dim(m) for m in MODALITIES}


def _corpus_of(parameters: dict, manifest_path: Path) -> Path:
    corpus = parameters.get("target_root") or parameters.get("llp")
    if not corpus:
        raise GeneratorDataError(f"{manifest_path}: the manifest names no corpus (parameters target_root / llp); re-run `mertk migrate-labels`")
    path = Path(corpus)
    if not path.is_dir():
        raise GeneratorDataError(f"{manifest_path}: its corpus {corpus} (where the features are) is not a folder here")
    return path


def _label_arrays(table) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Videos (first-seen order), their splits, and (videos, 2, 10, 25) hard and soft labels; vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    filenames_column = table.column("filename").combine_chunks()
    unique = pc.unique(filenames_column)
    video = pc.index_in(filenames_column, value_set=unique).to_numpy()
    modality = pc.equal(table.column("modality"), "visual").to_numpy().astype(np.int64)
    segment = table.column("segment").to_numpy().astype(np.int64)
    splits = table.column("split").to_numpy(zero_copy_only=False)
    n = len(unique)
    hard = np.zeros((n, len(MODALITIES), NUM_SEGMENTS, NUM_CLASSES), dtype=np.float32)
    soft = np.zeros_like(hard)
    scores = table.column("scores").combine_chunks()
    soft[video, modality, segment] = pc.list_flatten(scores).to_numpy().reshape(-1, NUM_CLASSES)
    labels = table.column("labels").combine_chunks()
    parents = pc.list_parent_indices(labels).to_numpy()
    classes = pc.index_in(pc.list_flatten(labels), value_set=pa.array(LLP_CLASSES)).to_numpy().astype(np.int64)
    hard[video[parents], modality[parents], segment[parents], classes] = 1.0
    split_of = np.empty(n, dtype=object)
    split_of[video] = splits
    return unique.to_pylist(), list(split_of), hard, soft


def _evaluation_videos(llp: Path) -> set[str]:
    """Filenames an LLP folder lists in its val and test CSVs."""
    from mertk.corpora.llp_annotations import LlpAnnotationError

    try:
        videos = read_llp_videos(llp, splits=("val", "test")).videos
    except LlpAnnotationError as error:
        raise GeneratorDataError(f"--exclude {llp}: {error}") from None
    return {video.filename for video in videos}


def _weak_labels(corpus: Path) -> dict[str, tuple[str, ...]]:
    """filename -> weak label from the corpus's CSVs; empty when it has none (feature-only corpus)."""
    from mertk.corpora.llp_annotations import LlpAnnotationError

    try:
        videos = read_llp_videos(corpus).videos
    except LlpAnnotationError:
        return {}
    return {video.filename: video.labels for video in videos}


def _pack_key(features: str, r2plus1d: bool, layout: FeatureLayout, entries: Sequence[tuple[str, str, str]]) -> str:
    """Changes with the feature set, the video list or any feature file (size, mtime)."""
    digest = hashlib.sha256(f"{features}|{r2plus1d}".encode())
    for corpus, filename, video_id in entries:
        digest.update(f"{corpus}|{filename}".encode())
        update_with_file_stats(digest, layout.files(corpus, video_id))
    return digest.hexdigest()[:16]


def read_generator_data(label_dirs: Sequence[Path | str], cache_dir: Path | str, exclude: Path | str | None = None, progress: bool = True) -> GeneratorData:
    """Open every label directory, align its labels with its corpus's features and weak labels."""
    from mertk.console import progress_bar
    from mertk.shards.dataset import open_shards

    if not label_dirs:
        raise GeneratorDataError("give at least one --labels directory (the output of `mertk migrate-labels`)")
    excluded_names = _evaluation_videos(Path(exclude)) if exclude is not None else set()
    feature_choice: tuple[str, bool] | None = None
    entries: list[tuple[str, str, str]] = []  # (corpus, filename, video_id)
    hard_parts, soft_parts, weak_rows, has_weak = [], [], [], []
    sources: list[LabelSource] = []
    seen: dict[tuple[str, str], str] = {}
    excluded = 0
    for label_dir in label_dirs:
        dataset = open_shards(label_dir, "avvp_pseudo_label", versions=(1,), produced_by=PRODUCED_BY)
        parameters = dataset.manifest.parameters
        choice = (str(parameters.get("features", "han")), bool(parameters.get("r2plus1d", True)))
        if feature_choice is not None and choice != feature_choice:
            raise GeneratorDataError(
                f"{dataset.manifest_path}: labels migrated on {choice[0]} features (r2plus1d {choice[1]}), "
                f"the other --labels on {feature_choice[0]} (r2plus1d {feature_choice[1]}); one generator trains on one feature set"
            )
        feature_choice = choice
        corpus = _corpus_of(parameters, dataset.manifest_path)
        table = dataset.read(["filename", "video_id", "split", "modality", "segment", "labels", "scores"])
        filenames, splits, hard, soft = _label_arrays(table)
        video_ids = dict(zip(table.column("filename").to_pylist(), table.column("video_id").to_pylist()))
        weak = _weak_labels(corpus)
        keep = []
        skipped = 0
        for row, (filename, split) in enumerate(zip(filenames, splits)):
            if split not in TRAINING_SPLITS:
                skipped += 1
                continue
            if filename in excluded_names:
                excluded += 1
                continue
            previous = seen.get((str(corpus), filename))
            if previous is not None:
                raise GeneratorDataError(f"{dataset.manifest_path}: {filename} of {corpus} is labelled in {previous} too; give each corpus once")
            seen[str(corpus), filename] = str(label_dir)
            keep.append(row)
            entries.append((str(corpus), filename, video_ids[filename]))
            labels = weak.get(filename)
            vector = np.zeros(NUM_CLASSES, dtype=np.float32)
            if labels is not None:
                vector[[LLP_CLASSES.index(name) for name in labels]] = 1.0
            weak_rows.append(vector)
            has_weak.append(labels is not None)
        hard_parts.append(hard[keep])
        soft_parts.append(soft[keep])
        sources.append(LabelSource(str(label_dir), str(corpus), file_sha256(dataset.manifest_path), len(keep), skipped))
    assert feature_choice is not None
    features, r2plus1d = feature_choice
    layout = feature_layout(features, r2plus1d)
    if not entries:
        raise GeneratorDataError(f"{', '.join(map(str, label_dirs))}: no train or target video to train on ({excluded} excluded)")

    key = _pack_key(features, r2plus1d, layout, entries)
    folder = Path(cache_dir) / f"generator-{features}-{key}"
    usable, rejections = _load_packed(folder, key)
    if usable is None:
        usable, rejections = _pack(folder, key, layout, entries, progress_bar, progress)
    rows = np.asarray(usable, dtype=np.int64)
    if len(rows) == 0:
        raise GeneratorDataError(f"no video of the label directories has usable {features} features (first problem: {rejections[0].reason})")
    arrays = [np.load(folder / f"{m}.npy", mmap_mode="r") for m in MODALITIES]
    return GeneratorData(
        features=features, r2plus1d=r2plus1d, layout=layout,
        filenames=[entries[i][1] for i in rows], corpora=[entries[i][0] for i in rows],
        audio_v_t_d=arrays[0], visual_v_t_d=arrays[1],
        hard_v_m_t_c=np.concatenate(hard_parts)[rows], soft_v_m_t_c=np.concatenate(soft_parts)[rows],
        weak_v_c=np.stack(weak_rows)[rows], has_weak_v=np.asarray(has_weak, dtype=bool)[rows],
        sources=sources, rejections=rejections, excluded=excluded, key=key,
    )  # fmt: skip


def _pack(folder: Path, key: str, layout: FeatureLayout, entries, progress_bar, progress: bool) -> tuple[list[int], list[Rejection]]:
    """Read each video's features once into two arrays (only usable videos kept); publish atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = {m: folder / f".{m}.npy.tmp-{os.getpid()}" for m in MODALITIES}
    arrays = {
        m: np.lib.format.open_memmap(temporary[m], mode="w+", dtype=np.float32, shape=(len(entries), NUM_SEGMENTS, layout.dim(m)))
        for m in MODALITIES
    }
    usable: list[int] = []
    rejections: list[Rejection] = []
    with progress_bar(len(entries), f"packing {layout.name} features", enabled=progress) as advance:
        for row, (corpus, filename, video_id) in enumerate(entries):
            try:
                embeddings = read_segment_embeddings(corpus, video_id, layout)
            except FeatureFileError as error:
                rejections.append(Rejection(input=f"{corpus}:{filename}", reason=f"{filename}: {error.reason}", file=error.file))
            else:
                arrays["audio"][len(usable)] = embeddings.audio_t_d
                arrays["visual"][len(usable)] = embeddings.visual_t_d
                usable.append(row)
            advance(1)
    for modality, array in arrays.items():
        final = folder / f".{modality}.final-{os.getpid()}.npy"  # ends in .npy: np.save keeps the name
        array.flush()
        np.save(final, array[: len(usable)], allow_pickle=False)
        del array
        os.replace(final, folder / f"{modality}.npy")
        temporary[modality].unlink()
    meta = {"key": key, "usable": usable, "rejections": [r.__dict__ for r in rejections]}
    write_bytes_atomic(folder / "meta.json", json.dumps(meta, sort_keys=True).encode())  # last: marks completion
    return usable, rejections


def _load_packed(folder: Path, key: str) -> tuple[list[int] | None, list[Rejection]]:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, []
    if meta.get("key") != key or not all((folder / f"{m}.npy").is_file() for m in MODALITIES):
        return None, []
    return list(meta["usable"]), [Rejection(**r) for r in meta["rejections"]]
