"""A deterministic SMIC-HS corpus in the real layout, with the planted truth beside it.

What `generate_smic(out, config)` writes under `out`:

- `HS/<subject>/micro/<positive|negative|surprise>/<clip>/image<frame>.bmp`: colour BMP frames
  (SMIC-HS: 100 fps), numbered from the clip's first to its last frame. No sheet, no AU labels,
  no apex: the label is the folder. Subject and clip names are the MEGC2019 composite list's
  SMIC ones, written unpadded for most subjects (`s3/.../s3_ne_03`) and padded for one
  (`s01/.../s01_po_01`), as both occur in the wild;
- `ground_truth.parquet`: the planted motion of each clip (every row `labelled` false), with the
  true apex; `ground_truth_flow/<clip>.npz`; `mertk_sample.json` (see `mertk.sample_data.mer_corpus`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mertk.corpora.megc2019 import load_composite_list
from mertk.corpora.smic import CLIP_CODES, HS_FOLDER, MICRO_FOLDER, clip_name
from mertk.sample_data.casme2 import SamplePlan
from mertk.sample_data.folder import SampleDataError
from mertk.sample_data.mer_corpus import CorpusDesign, MerSampleConfig, MerSampleSummary, Slot, encode_bmp, looks_for, pick, plan_samples, write_corpus

DATASET = "smic"
# What the frames show per class (SMIC has no AU coding; these are the motions planted).
PLANTED = {
    "positive": ("12", "6+12", "R12"),
    "negative": ("4", "4+7", "10", "15", "L14", "4+15"),
    "surprise": ("1+2", "1+2+5", "2"),
}
CODE_OF = {emotion: code for code, emotion in CLIP_CODES.items()}

SCALES: dict[str, MerSampleConfig] = {
    # 3 subjects x 4 clips, 20 frames (0.2 s at 100 fps); no mislabels: there are no labels
    "default": MerSampleConfig(subjects=3, samples_per_subject=4, frames=20, missing_fraction=0.0, extra_fraction=0.0, slash_apex_fraction=0.0),
}


def _padded(subject: int) -> bool:
    return subject % 2 == 0  # one spelling per subject; plan_smic picks both kinds


def _folder_names(plan: SamplePlan) -> tuple[str, str]:
    """(subject folder, clip folder) as written on disk."""
    if _padded(plan.subject):
        return f"s{plan.subject:02d}", plan.episode
    _, code, number = plan.episode.split("_")
    return f"s{plan.subject}", f"s{plan.subject}_{code}_{number}"


def frame_path(plan: SamplePlan, number: int) -> str:
    subject, clip = _folder_names(plan)
    return f"{HS_FOLDER}/{subject}/{MICRO_FOLDER}/{plan.emotion}/{clip}/image{number:06d}.bmp"


def sample_id(plan: SamplePlan) -> str:
    return plan.episode  # the padded name, as the reader normalises it


DESIGN = CorpusDesign(DATASET, (HS_FOLDER,), (), frame_path, encode_bmp, sample_id)


def plan_smic(config: MerSampleConfig) -> tuple[dict, list[SamplePlan]]:
    rng = np.random.default_rng([config.seed, 0x5317])
    listed: dict[int, list[tuple[str, str]]] = {}
    for entry in load_composite_list():
        if entry.dataset == DATASET:
            listed.setdefault(int(entry.subject[1:]), []).append((entry.clip, entry.label))
    if config.subjects > len(listed):
        raise SampleDataError(f"the composite list has {len(listed)} SMIC subjects; asked for {config.subjects}")
    candidates = sorted(listed, key=lambda s: (-len({l for _, l in listed[s]}), -len(listed[s]), s))[: config.subjects * 2]
    # one subject of each spelling first (padded names for even subjects), then any
    first = [pick(rng, [c for c in candidates if _padded(c) == padded], 1) for padded in (True, False)]
    chosen = [group[0] for group in first if group][: config.subjects]
    subjects = sorted(chosen + pick(rng, [c for c in candidates if c not in chosen], config.subjects - len(chosen)))
    slots = []
    for subject in subjects:
        for clip, label in sorted(pick(rng, listed[subject], config.samples_per_subject)):
            name, emotion = clip_name(clip)
            assert emotion == label, (clip, label)
            cell = PLANTED[emotion][int(rng.integers(len(PLANTED[emotion])))]
            slots.append(Slot(subject, name, emotion, "", onset=int(rng.integers(1, 3000)), plant_cell=cell))
    plans = plan_samples(config, slots, rng)
    return looks_for(subjects, config, rng), plans


def generate_smic(
    out_dir: Path | str,
    config: MerSampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    plan: tuple[dict, list[SamplePlan]] | None = None,
) -> MerSampleSummary:
    looks, plans = plan if plan is not None else plan_smic(config)
    return write_corpus(out_dir, config, DESIGN, looks, plans, {}, {"fps": 100}, progress, workers)
