"""A deterministic MMEW corpus in the real layout, with the planted truth beside it.

What `generate_mmew(out, config)` writes under `out`:

- `Micro_Expression/<emotion>/<clip>/<frame>.jpg`: colour JPEG frames (90 fps), numbered from the
  sheet's onset to its offset, filed under the emotion's folder;
- `MMEW_Micro_Exp.xlsx`: the sheet (CASME II's columns) with MMEW's quirks: side letters before
  or after the AU number (`L14`, `12L`, `4R+7`), subjects as `S01`, emotions in mixed case;
- `ground_truth.parquet`, `ground_truth_flow/<subject>_<clip>.npz`, `mertk_sample.json`
  (see `mertk.sample_data.mer_corpus`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mertk.corpora.mmew import COLUMNS, FRAMES_FOLDER, SHEET_NAME
from mertk.sample_data.casme2 import SamplePlan, workbook_bytes
from mertk.sample_data.mer_corpus import CorpusDesign, MerSampleConfig, MerSampleSummary, Slot, encode_jpeg_colour, looks_for, plan_samples, write_corpus

DATASET = "mmew"
SHEET_COLUMNS = tuple(COLUMNS)
# MMEW's micro-expression counts (300 clips).
EMOTION_WEIGHTS = {"others": 102, "surprise": 89, "disgust": 72, "happiness": 36, "fear": 16, "sadness": 13, "anger": 8}
AU_TEMPLATES = {
    "others": ("L14", "17", "24"),
    "surprise": ("1+2", "1+2+5", "2L"),
    "disgust": ("4R+7", "4+10", "9"),
    "happiness": ("12L", "6+12", "R12"),
    "fear": ("20", "1+2+20"),
    "sadness": ("1+15", "15R+17"),
    "anger": ("4", "4+7"),
}
REQUIRED_CELLS = (("others", "L14"), ("happiness", "12L"), ("disgust", "4R+7"))

SCALES: dict[str, MerSampleConfig] = {
    # 3 subjects x 4 clips, 18 frames (0.2 s at 90 fps)
    "default": MerSampleConfig(subjects=3, samples_per_subject=4, frames=18, slash_apex_fraction=0.0),
}


def frame_path(plan: SamplePlan, number: int) -> str:
    return f"{FRAMES_FOLDER}/{plan.emotion}/{plan.episode}/{number}.jpg"


def sample_id(plan: SamplePlan) -> str:
    return f"S{plan.subject:02d}/{plan.episode}"


DESIGN = CorpusDesign(DATASET, (FRAMES_FOLDER,), (SHEET_NAME,), frame_path, encode_jpeg_colour, sample_id)


def plan_mmew(config: MerSampleConfig) -> tuple[dict, list[SamplePlan]]:
    rng = np.random.default_rng([config.seed, 0x33E3])
    subjects = list(range(1, config.subjects + 1))
    emotions = list(EMOTION_WEIGHTS)
    weights = np.array([EMOTION_WEIGHTS[e] for e in emotions], float)
    pending = list(REQUIRED_CELLS)
    slots = []
    for subject in subjects:
        numbers: dict[str, int] = {}
        for _ in range(config.samples_per_subject):
            if pending:
                emotion, cell = pending.pop(0)
            else:
                emotion = emotions[int(rng.choice(len(emotions), p=weights / weights.sum()))]
                cell = AU_TEMPLATES[emotion][int(rng.integers(len(AU_TEMPLATES[emotion])))]
            numbers[emotion] = numbers.get(emotion, 0) + 1
            clip = f"S{subject:02d}_{emotion}_{numbers[emotion]:02d}"
            slots.append(Slot(subject, clip, emotion, cell, onset=int(rng.integers(1, 200))))
    return looks_for(subjects, config, rng), plan_samples(config, slots, rng)


def xlsx_bytes(plans: list[SamplePlan]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(list(SHEET_COLUMNS))
    for index, plan in enumerate(plans):
        emotion = plan.emotion.title() if index % 3 == 0 else plan.emotion  # mixed case, as released
        sheet.append([f"S{plan.subject:02d}", plan.episode, plan.onset_frame, plan.apex_frame, plan.offset_frame, plan.au_cell, emotion])
    return workbook_bytes(workbook, "2021-01-01T00:00:00Z")


def generate_mmew(
    out_dir: Path | str,
    config: MerSampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> MerSampleSummary:
    looks, plans = plan_mmew(config)
    return write_corpus(out_dir, config, DESIGN, looks, plans, {SHEET_NAME: xlsx_bytes(plans)}, {"fps": 90}, progress, workers)
