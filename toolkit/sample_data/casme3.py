"""A deterministic CAS(ME)^3 part A corpus in the real layout, with the planted truth beside it.

What `generate_casme3(out, config)` writes under `out`:

- `data/part_A/<subject>/<recording>/color/<frame>.jpg`: colour JPEG frames (30 fps); a
  recording holds two micro-expressions back to back, as the corpus' recordings hold several;
- `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`: the micro-expression sheet with the release's
  quirks: every cell stored as text, emotions in mixed case and short forms (`Others`/`others`,
  `sad`, `happy`), AU codes with prefixes (`T28+14`, `B23`), and rows whose apex is before the
  onset or 0, or whose offset is 0 (the truth keeps the true frames);
- `ground_truth.parquet`, `ground_truth_flow/<subject>_<recording>_<onset>.npz`,
  `mertk_sample.json` (see `mertk.sample_data.mer_corpus`); sample ids as the reader makes them
  (`spNO.1/a_116`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from mertk.corpora.casme3 import COLUMNS, FRAME_SUBFOLDER, SHEET_NAME
from mertk.sample_data.casme2 import SamplePlan, workbook_bytes
from mertk.sample_data.mer_corpus import CorpusDesign, MerSampleConfig, MerSampleSummary, Slot, encode_jpeg_colour, looks_for, plan_samples, write_corpus

DATASET = "casme3"
FRAMES_ROOT = "data/part_A"
SHEET_COLUMNS = tuple(COLUMNS)
RECORDINGS = "abcdefghijklmn"
# Part A's emotions and roughly how often they occur; the sheet spells them in several ways.
EMOTION_WEIGHTS = {"others": 30, "disgust": 25, "surprise": 15, "happy": 10, "anger": 8, "sad": 7, "fear": 5}
SPELLINGS = {"others": ("Others", "others"), "happy": ("happy", "Happy"), "sad": ("sad", "Sad"), "surprise": ("surprise", "Surprise")}
AU_TEMPLATES = {
    "others": ("T28+14", "14", "L12", "24"),
    "disgust": ("4+7", "B23+4", "9", "4+10"),
    "surprise": ("1+2", "1+2+5"),
    "happy": ("12", "6+12", "R12"),
    "anger": ("4", "B23", "4+7"),
    "sad": ("1+15", "15+17"),
    "fear": ("20", "1+2+20"),
}
# The real sheet's spellings, once each in every generated sheet.
REQUIRED_CELLS = (("others", "T28+14"), ("anger", "B23"), ("happy", "12"), ("sad", "1+15"), ("others", "14"))
OBJECTIVE_CLASSES = {"happy": 1, "surprise": 2, "anger": 3, "disgust": 4, "sad": 5, "fear": 6, "others": 7}

SCALES: dict[str, MerSampleConfig] = {
    # 3 subjects x 4 micro-expressions, 16 frames (0.53 s at 30 fps)
    "default": MerSampleConfig(subjects=3, samples_per_subject=4, frames=16, slash_apex_fraction=0.25),
}


def _recording(plan: SamplePlan) -> str:
    return plan.episode.rsplit("_", 1)[0]


def frame_path(plan: SamplePlan, number: int) -> str:
    return f"{FRAMES_ROOT}/spNO.{plan.subject}/{_recording(plan)}/{FRAME_SUBFOLDER}/{number}.jpg"


def sample_id(plan: SamplePlan) -> str:
    return f"spNO.{plan.subject}/{plan.episode}"


DESIGN = CorpusDesign(DATASET, ("data",), (SHEET_NAME,), frame_path, encode_jpeg_colour, sample_id)


def plan_casme3(config: MerSampleConfig) -> tuple[dict, list[SamplePlan]]:
    rng = np.random.default_rng([config.seed, 0xCA5E3])
    subjects = list(range(1, config.subjects + 1))
    emotions = list(EMOTION_WEIGHTS)
    weights = np.array([EMOTION_WEIGHTS[e] for e in emotions], float)
    pending = list(REQUIRED_CELLS)
    slots = []
    for subject in subjects:
        for index in range(config.samples_per_subject):
            recording = RECORDINGS[index // 2]
            if index % 2 == 0:
                onset = int(rng.integers(1, 400))
            else:  # the second micro-expression of the recording starts where the first ends
                onset = slots[-1].onset + config.frames
            if pending:
                emotion, cell = pending.pop(0)
            else:
                emotion = emotions[int(rng.choice(len(emotions), p=weights / weights.sum()))]
                cell = AU_TEMPLATES[emotion][int(rng.integers(len(AU_TEMPLATES[emotion])))]
            slots.append(Slot(subject, f"{recording}_{onset}", emotion, cell, onset=onset))
    plans = plan_samples(config, slots, rng)
    # Quirks, in turn: apex before onset, apex 0, offset 0 (the reader bounds the clip at onset + 0.5 s).
    count = max(3, round(config.slash_apex_fraction * len(plans))) if config.slash_apex_fraction > 0 else 0
    for position, index in enumerate(rng.permutation(len(plans))[: min(count, len(plans))]):
        plan = plans[int(index)]
        kind = position % 3
        if kind == 0:
            plans[int(index)] = replace(plan, apex_in_sheet=False, sheet_apex=plan.onset_frame - int(rng.integers(1, 10)))
        elif kind == 1:
            plans[int(index)] = replace(plan, apex_in_sheet=False, sheet_apex=0)
        else:
            plans[int(index)] = replace(plan, sheet_offset=0)
    return looks_for(subjects, config, rng), plans


def sheet_rows(plans: list[SamplePlan]) -> list[list[str]]:
    """The sheet's rows, every cell text; an emotion's spellings take turns ('Others', 'others', ...)."""
    rows, seen = [], {}
    for plan in plans:
        apex = plan.apex_frame if plan.apex_in_sheet else plan.sheet_apex
        offset = plan.offset_frame if plan.sheet_offset is None else plan.sheet_offset
        spellings = SPELLINGS.get(plan.emotion, (plan.emotion,))
        emotion = spellings[seen.get(plan.emotion, 0) % len(spellings)]
        seen[plan.emotion] = seen.get(plan.emotion, 0) + 1
        rows.append([f"spNO.{plan.subject}", _recording(plan), str(plan.onset_frame), str(apex), str(offset), plan.au_cell, str(OBJECTIVE_CLASSES[plan.emotion]), emotion])
    return rows


def xlsx_bytes(plans: list[SamplePlan]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(list(SHEET_COLUMNS))
    for row in sheet_rows(plans):
        sheet.append(row)
    return workbook_bytes(workbook, "2022-01-01T00:00:00Z")


def generate_casme3(
    out_dir: Path | str,
    config: MerSampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> MerSampleSummary:
    looks, plans = plan_casme3(config)
    return write_corpus(out_dir, config, DESIGN, looks, plans, {SHEET_NAME: xlsx_bytes(plans)}, {"fps": 30}, progress, workers)
