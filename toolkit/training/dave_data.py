"""UnAV-100 annotations and features -> the DAVE trainer's packed arrays and batches.

Features are read once per video with mertk.corpora.unav100 (aligned, checked) and appended to
two contiguous float32 files (visual (rows, 2048), audio (rows, 128)) under
`cache_dir/dave-<key>/`, one video at a time; an index records each video's first row and length.
Later runs and epochs read those files memory-mapped, never the per-video files. The key hashes
the annotation file and the names, sizes and mtimes of the feature files, so a changed corpus is
packed again. A video whose features cannot be used is a recorded rejection naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mertk.corpora.llp_features import FeatureFileError
from mertk.corpora.unav100 import (
    AUDIO_DIM,
    AUDIO_PART,
    NUM_CLASSES,
    VISUAL_DIM,
    VISUAL_PARTS,
    UnavAnnotationError,
    UnavAnnotations,
    feature_path,
    read_unav_annotations,
    read_unav_features,
    seconds_to_steps,
    split_name,
    unav_feature_folder,
)
from mertk.shards.io import write_bytes_atomic
from mertk.shards.manifest import Rejection
from mertk.training.errors import TrainingError

PACK_FORMAT = "mertk.dave_pack.v1"


class DaveDataError(TrainingError):
    """The UnAV-100 folder cannot be used."""


@dataclass
class PackedUnav:
    annotations: UnavAnnotations
    video_ids: list[str]  # videos with usable features, annotation-file order
    subsets: np.ndarray  # (v,) str
    first_row: np.ndarray  # (v,) int64
    steps: np.ndarray  # (v,) int64
    visual_n_d: np.ndarray  # (rows, 2048) float32, memory-mapped
    audio_n_d: np.ndarray  # (rows, 128) float32, memory-mapped
    alignments: dict[str, int]  # how many videos were aligned how (equal | truncated | resampled)
    rejections: list[Rejection]
    key: str

    def rows_of(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.subsets == split_name(split))


def _corpus_key(annotation_file: Path, folder: Path, video_ids: list[str]) -> str:
    digest = hashlib.sha256(PACK_FORMAT.encode())
    digest.update(annotation_file.read_bytes())
    for video_id in video_ids:
        for part in (*(name for name, _ in VISUAL_PARTS), AUDIO_PART[0]):
            path = feature_path(folder, video_id, part)
            try:
                status = path.stat()
                digest.update(f"{path.name}:{status.st_size}:{status.st_mtime_ns};".encode())
            except OSError:
                digest.update(f"{path.name}:missing;".encode())
    return digest.hexdigest()[:20]


def pack_unav(root: Path | str, cache_dir: Path | str, progress: bool = True) -> PackedUnav:
    """Read (or reuse) the packed features of every annotated video under `root`."""
    from mertk.console import progress_bar

    try:
        annotations = read_unav_annotations(root)
    except UnavAnnotationError as error:
        raise DaveDataError(str(error)) from None
    folder = unav_feature_folder(root)
    all_ids = list(annotations.videos)
    key = _corpus_key(annotations.path, folder, all_ids)
    pack_dir = Path(cache_dir) / f"dave-{key}"
    index_path = pack_dir / "index.json"
    if not index_path.is_file():
        pack_dir.mkdir(parents=True, exist_ok=True)
        visual_tmp, audio_tmp = pack_dir / f".visual.f32.tmp-{os.getpid()}", pack_dir / f".audio.f32.tmp-{os.getpid()}"
        ids, steps, alignments, rejections = [], [], {}, []
        with open(visual_tmp, "wb") as visual_file, open(audio_tmp, "wb") as audio_file, progress_bar(len(all_ids), "pack UnAV-100 features", enabled=progress) as advance:
            for video_id in all_ids:
                try:
                    features = read_unav_features(folder, video_id)
                except FeatureFileError as error:
                    rejections.append({"input": video_id, "reason": error.reason, "file": error.file})
                else:
                    visual_file.write(features.visual_t_d.tobytes())
                    audio_file.write(features.audio_t_d.tobytes())
                    ids.append(video_id)
                    steps.append(features.alignment.steps)
                    alignments[features.alignment.method] = alignments.get(features.alignment.method, 0) + 1
                advance(1)
        os.replace(visual_tmp, pack_dir / "visual.f32")
        os.replace(audio_tmp, pack_dir / "audio.f32")
        index = {"format": PACK_FORMAT, "video_ids": ids, "steps": steps, "alignments": dict(sorted(alignments.items())), "rejections": rejections}
        write_bytes_atomic(index_path, json.dumps(index).encode())
    index = json.loads(index_path.read_text())
    ids = index["video_ids"]
    if not ids:
        raise DaveDataError(f"{folder}: no video has usable features (first problem: {index['rejections'][0]['reason'] if index['rejections'] else 'no videos'})")
    steps = np.asarray(index["steps"], dtype=np.int64)
    rows = int(steps.sum())
    first_row = np.concatenate([[0], np.cumsum(steps)[:-1]]).astype(np.int64)
    visual = np.memmap(pack_dir / "visual.f32", dtype=np.float32, mode="r", shape=(rows, VISUAL_DIM))
    audio = np.memmap(pack_dir / "audio.f32", dtype=np.float32, mode="r", shape=(rows, AUDIO_DIM))
    subsets = np.array([annotations.videos[video_id].subset for video_id in ids])
    rejections = [Rejection(r["input"], r["reason"], r["file"]) for r in index["rejections"]]
    return PackedUnav(annotations, ids, subsets, first_row, steps, visual, audio, index["alignments"], rejections, key)


def feature_statistics(packed: PackedUnav, videos: np.ndarray, chunk_rows: int = 1 << 15) -> tuple[np.ndarray, ...]:
    """Per-dimension mean and std (float64 sums) of the given videos' steps: visual mean, std, audio mean, std."""
    statistics = []
    for array in (packed.visual_n_d, packed.audio_n_d):
        total = np.zeros(array.shape[1]); squares = np.zeros(array.shape[1]); count = 0  # fmt: skip
        for video in videos:
            start, stop = packed.first_row[video], packed.first_row[video] + packed.steps[video]
            for low in range(start, stop, chunk_rows):
                block = np.asarray(array[low : min(stop, low + chunk_rows)], dtype=np.float64)
                total += block.sum(0); squares += (block**2).sum(0); count += len(block)  # fmt: skip
        mean = total / max(count, 1)
        statistics += [mean, np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))]
    return tuple(statistics)


@dataclass
class DaveBatch:
    visual_btd: torch.Tensor
    audio_btd: torch.Tensor
    mask_bt: torch.Tensor
    segments_bg2: torch.Tensor  # event boundaries in steps
    labels_bg: torch.Tensor
    valid_bg: torch.Tensor
    video_labels_bc: torch.Tensor  # classes present in the video (multi-hot)
    durations_b: torch.Tensor
    videos: np.ndarray  # indices into packed.video_ids

    def to(self, device: torch.device) -> "DaveBatch":
        moved = {name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value for name, value in vars(self).items()}
        return DaveBatch(**moved)


def make_batch(packed: PackedUnav, videos: np.ndarray, multiple_of: int) -> DaveBatch:
    """Whole videos, padded to the longest (rounded up to `multiple_of` steps)."""
    length = int(packed.steps[videos].max())
    length = -(-length // multiple_of) * multiple_of
    batch = len(videos)
    visual = np.zeros((batch, length, VISUAL_DIM), dtype=np.float32)
    audio = np.zeros((batch, length, AUDIO_DIM), dtype=np.float32)
    mask = np.zeros((batch, length), dtype=bool)
    events = [packed.annotations.videos[packed.video_ids[v]].events for v in videos]
    width = max(1, max(len(e) for e in events))
    segments = np.zeros((batch, width, 2), dtype=np.float32)
    labels = np.zeros((batch, width), dtype=np.int64)
    valid = np.zeros((batch, width), dtype=bool)
    video_labels = np.zeros((batch, NUM_CLASSES), dtype=np.float32)
    durations = np.zeros(batch, dtype=np.float32)
    for i, video in enumerate(videos):
        start, steps = packed.first_row[video], packed.steps[video]
        visual[i, :steps] = packed.visual_n_d[start : start + steps]
        audio[i, :steps] = packed.audio_n_d[start : start + steps]
        mask[i, :steps] = True
        for j, event in enumerate(events[i]):
            segments[i, j] = seconds_to_steps(np.array([event.start, event.end]))
            labels[i, j] = event.label_id
            valid[i, j] = True
            video_labels[i, event.label_id] = 1.0
        durations[i] = packed.annotations.videos[packed.video_ids[video]].duration
    tensors = (torch.from_numpy(a) for a in (visual, audio, mask, segments, labels, valid, video_labels, durations))
    return DaveBatch(*tensors, videos=np.asarray(videos))
