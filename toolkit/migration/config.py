"""The settings of a migration run, its result, the unit it labels, and its one error class."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mertk.corpora.llp_annotations import NUM_CLASSES
from mertk.corpora.llp_features import FEATURE_SETS
from mertk.errors import InputError
from mertk.execution.ray_executor import EXECUTORS
from mertk.migration.migrate import DEFAULT_TEMPERATURE
from mertk.migration.neighbours import INDEX_KINDS
from mertk.migration.thresholds import THRESHOLD_RULES
from mertk.shards.layout import STATE_DIR

if TYPE_CHECKING:
    from mertk.shards.manifest import Manifest

OUTPUT_FOLDER = "avvp_pseudo"  # OUT/avvp_pseudo/: the pseudo-label shards, manifest and report
TARGET_FOLDER = "avvp_target"  # beside OUTPUT_FOLDER: a reader of one folder meets one schema
CACHE_FOLDER = f"{STATE_DIR}/segments"  # inside each output folder, removed at the end of the run
NEIGHBOURS_FOLDER = f"{STATE_DIR}/neighbours"  # inside the target's output folder: the index files workers map; removed at the end
CALIBRATIONS = ("none", "val")  # label-free thresholds, or fitted on the val dense labels
COMBINE_RULES = ("generator", "similarity", "mean")  # with a generator: its probability, today's score, or their mean


class MigrationError(InputError):
    """The run as a whole cannot proceed (bad arguments, no usable video); the message names the file."""


@dataclass(frozen=True)
class MigrationConfig:
    """Every choice of the method, with its default (all recorded in the manifest)."""

    features: str = "han"  # one of FEATURE_SETS: han | clip
    r2plus1d: bool = True  # HAN visual = res152 pooled + r2plus1d_18
    text_anchors: str | None = None  # safetensors file (language-aligned features)
    clip_checkpoint: str | None = None  # CLIP state dict -> visual text anchors
    calibrate: str = "none"  # one of CALIBRATIONS
    threshold_rule: str = "midpoint"  # label-free rule, one of THRESHOLD_RULES
    refine_iterations: int = 2  # prototype refinements
    fit_videos: int = 2000  # videos (evenly spaced) that anchors and thresholds are fitted on; 0 = all
    temperature: float = DEFAULT_TEMPERATURE  # soft score = sigmoid((sim - thr) / temperature)
    centre: bool = True  # centre and scale each feature part by its corpus statistics
    target: str | None = None  # another corpus in the same layout
    vocabulary: str | None = None  # JSON source class -> target class
    neighbours: int = 10  # k of the cross-corpus k-NN
    vote_threshold: float = 0.5  # share of weighted neighbour votes for a target label
    neighbour_index: str = "auto"  # one of INDEX_KINDS: exact, IVF, or by bank x target size
    shard_videos: int = 256  # videos per output shard (20 rows each)
    block_videos: int = 512  # videos per block in the streaming passes
    workers: int = 1  # processes for labelling; CPUs of a local Ray with executor="ray"
    executor: str = "local"  # one of EXECUTORS: this machine, or Ray tasks
    ray_address: str | None = None  # the Ray cluster (default: RAY_ADDRESS, else a local Ray)
    generator: str | None = None  # a `mertk train generator` checkpoint (mertk.migration.generator)
    combine: str = "generator"  # one of COMBINE_RULES, with a generator

    def parameters(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("workers", "executor", "ray_address"):  # where it runs does not change the output
            data.pop(name)
        if self.generator is None:  # runs without a generator record what they always did
            data.pop("generator"), data.pop("combine")
        return data

    def check(self) -> None:
        """MigrationError naming the first setting out of its range (the CLI checks the same before)."""
        choices = {
            "features": FEATURE_SETS, "calibrate": CALIBRATIONS, "threshold_rule": THRESHOLD_RULES,
            "neighbour_index": INDEX_KINDS, "executor": EXECUTORS, "combine": COMBINE_RULES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise MigrationError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        at_least = {"refine_iterations": 0, "fit_videos": 0, "neighbours": 1, "shard_videos": 1, "block_videos": 1, "workers": 1}
        for name, least in at_least.items():
            if getattr(self, name) < least:
                raise MigrationError(f"{name} must be at least {least}, not {getattr(self, name)}")
        if not self.temperature > 0:
            raise MigrationError(f"temperature must be > 0, not {self.temperature}")
        if not 0 < self.vote_threshold <= 1:
            raise MigrationError(f"vote_threshold must be in (0, 1], not {self.vote_threshold}")


@dataclass
class MigrationResult:
    """What a run wrote: the output folder, its manifest, scores per split, the target summary, the report."""

    out_dir: Path
    manifest: Manifest
    scores: dict[str, dict[str, Any]]  # split -> {"pseudo": {...}, "naive": {...}, "videos": n}
    target: dict[str, Any] | None = None
    report: Path | None = None


@dataclass(frozen=True)
class VideoUnit:
    """One usable video: its index in the segment cache and its weak label."""

    cache_index: int
    filename: str
    video_id: str
    split: str
    classes: tuple[int, ...]


def weak_matrix(units: Sequence[VideoUnit]) -> np.ndarray:
    """(n, 25) bool: the weak label of each unit (one scatter, no per-unit indexing)."""
    weak_n_c = np.zeros((len(units), NUM_CLASSES), dtype=bool)
    counts_n = np.fromiter((len(unit.classes) for unit in units), dtype=np.int64, count=len(units))
    classes = np.fromiter(itertools.chain.from_iterable(unit.classes for unit in units), dtype=np.int64, count=int(counts_n.sum()))
    weak_n_c[np.repeat(np.arange(len(units)), counts_n), classes] = True
    return weak_n_c
