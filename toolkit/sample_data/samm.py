"""A deterministic SAMM corpus in the real layout, with the planted truth beside it.

What `generate_samm(out, config)` writes under `out`:

- `SAMM/<subject>/<clip>/<subject>_<frame>.jpg`: grey JPEG frames (SAMM is a 2040x1088 grey
  camera; here `config.width` x `config.height`), numbered from the sheet's onset to its offset;
- `SAMM_Micro_FACS_Codes_v2.xlsx`: the micro-movement sheet with the release's quirks: title and
  notes rows above the header, the v2 columns in order, subjects as text (`006`), `Duration` a
  formula cell, SAMM's AU notation (`12A`, `A14C`, `10A/B`, `ref(7B)+43`, `(R6 or R12)+R15`,
  `A/L12`, `L12 or L14`, trailing spaces), Title-case emotions, objective classes, and some rows
  whose apex lies outside onset..offset (the truth keeps the true apex);
- `ground_truth.parquet`, `ground_truth_flow/<clip>.npz`, `mertk_sample.json`: as for CASME II
  (see `mertk.sample_data.mer_corpus`), sample ids as the reader makes them (`006_1_2`).

Subjects and clip names are the MEGC2019 composite list's SAMM ones (each subject's listed clips,
with emotions that agree with the listed class), plus one `Other` clip per subject and, where a
subject has too few listed clips, unlisted negative ones (`<subject>_9_<n>`), which the composite
leaves out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mertk.corpora.megc2019 import load_composite_list
from mertk.corpora.samm import COLUMNS, FRAMES_FOLDER, SHEET_NAME, frame_file_name
from mertk.sample_data.casme2 import SamplePlan, workbook_bytes
from mertk.sample_data.folder import SampleDataError
from mertk.sample_data.mer_corpus import (
    CorpusDesign,
    MerSampleConfig,
    MerSampleSummary,
    Slot,
    encode_jpeg_grey,
    looks_for,
    pick,
    plan_samples,
    with_sheet_apex,
    write_corpus,
)

DATASET = "samm"
SHEET_COLUMNS = tuple(COLUMNS)  # the reader's canonical names are the v2 headers, in sheet order
PREAMBLE = (
    ("SAMM: Spontaneous Actions and Micro-Movements -- micro-movement FACS codes (generated sample)",),
    ("Coded by two certified FACS coders; intensity letters A-E follow the AU number.",),
    ("'or' marks alternatives the coders could not decide between; ref(...) marks a reference code.",),
    (),
    ("Inducement Code: the stimulus shown; Type: the movement's class.",),
    (),
)
# Negative emotions of SAMM and how often the real corpus has them (anger 57, contempt 12, disgust 9, fear 8, sadness 6).
NEGATIVE_WEIGHTS = {"anger": 57, "contempt": 12, "disgust": 9, "fear": 8, "sadness": 6}
# AU cells per emotion in SAMM spelling; no two codes of a cell push one region in opposite directions.
AU_TEMPLATES = {
    "anger": ("4+7", "4B+7A", "ref(7B)+43", "4C"),
    "contempt": ("A14C", "R14A ", "L12 or L14"),
    "disgust": ("10A/B", "9+10B", "4+10A"),
    "fear": ("20B", "1+2+20"),
    "sadness": ("1+15B", "15A+17"),
    "happiness": ("12A", "6B+12C", "A/L12", "R12B"),
    "surprise": ("1+2", "1A+2A+5B"),
    "other": ("(R6 or R12)+R15", "17B", "24A", "L12 or L14"),
}
# Spellings of the real sheet that every generated sheet carries at least once.
REQUIRED_CELLS = (
    ("happiness", "12A"), ("contempt", "A14C"), ("disgust", "10A/B"), ("anger", "ref(7B)+43"),
    ("other", "(R6 or R12)+R15"), ("happiness", "A/L12"), ("other", "L12 or L14"),
)
OBJECTIVE_CLASSES = {"happiness": 1, "surprise": 2, "anger": 3, "disgust": 4, "sadness": 5, "fear": 6, "contempt": 7, "other": 7}

SCALES: dict[str, MerSampleConfig] = {
    # 3 subjects x 4 clips, frames small (SAMM's 2040x1088 aspect), 20 frames (0.1 s at 200 fps)
    "default": MerSampleConfig(subjects=3, samples_per_subject=4, width=360, height=192, frames=20, slash_apex_fraction=0.2),
}


def frame_path(plan: SamplePlan, number: int) -> str:
    subject = f"{plan.subject:03d}"
    return f"{FRAMES_FOLDER}/{subject}/{plan.episode}/{frame_file_name(subject, number)}"


def sample_id(plan: SamplePlan) -> str:
    return plan.episode


DESIGN = CorpusDesign(DATASET, (FRAMES_FOLDER,), (SHEET_NAME,), frame_path, encode_jpeg_grey, sample_id)


def _listed_clips() -> dict[int, list[tuple[str, str]]]:
    """Subject number -> [(clip, 3-class label)] of the composite list's SAMM part, in list order."""
    by_subject: dict[int, list[tuple[str, str]]] = {}
    for entry in load_composite_list():
        if entry.dataset == DATASET:
            by_subject.setdefault(int(entry.subject), []).append((entry.clip, entry.label))
    return by_subject


def _clips_of(wanted: str | None, clips: list[tuple[str, str]], count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """`count` listed clips of a subject: one of the `wanted` class first where it has one, then
    negatives (most of SAMM), then any."""
    order = pick(rng, clips, len(clips))
    first = [c for c in order if c[1] == wanted][:1]
    rest = sorted((c for c in order if c not in first), key=lambda c: c[1] != "negative")
    return (first + rest)[:count]


def _choose_subjects(listed: dict[int, list[tuple[str, str]]], count: int, rng: np.random.Generator) -> dict[int, str | None]:
    """Subject -> the class wanted from it: two subjects with a positive clip and one with a
    surprise where the list has them (the sheet's happiness spellings need them), then any."""
    chosen: dict[int, str | None] = {}
    for wanted in ("positive", "positive", "surprise"):
        having = [s for s in sorted(listed) if s not in chosen and any(label == wanted for _, label in listed[s])]
        if having and len(chosen) < count:
            chosen[pick(rng, having, 1)[0]] = wanted
    rest = sorted(s for s in listed if s not in chosen)
    for subject in pick(rng, rest, count - len(chosen)):
        chosen[subject] = None
    return dict(sorted(chosen.items()))


def plan_samm(config: MerSampleConfig) -> tuple[dict, list[SamplePlan]]:
    """Subjects, clips, emotions, AU cells and timing; deterministic in the seed."""
    rng = np.random.default_rng([config.seed, 0x5A33])
    listed = _listed_clips()
    wanted = _choose_subjects(listed, config.subjects, rng)
    subjects = list(wanted)
    if len(subjects) < config.subjects:
        raise SampleDataError(f"the composite list has {len(listed)} SAMM subjects; asked for {config.subjects}")
    negative = list(NEGATIVE_WEIGHTS)
    weights = np.array([NEGATIVE_WEIGHTS[e] for e in negative], float)
    pending = list(REQUIRED_CELLS)
    slots = []
    for subject in subjects:
        clips = _clips_of(wanted[subject], listed[subject], config.samples_per_subject - 1, rng)
        # one 'Other' clip, and unlisted negative clips where the list has too few (the composite
        # leaves out clips of the full corpus too); inducement code 9 is not in the list
        unlisted = [(f"{subject:03d}_9_{k + 1}", "other" if k == 0 else "negative") for k in range(config.samples_per_subject - len(clips))]
        for clip, label in sorted(clips) + unlisted:
            if label == "negative":
                emotion = negative[int(rng.choice(len(negative), p=weights / weights.sum()))]
            else:
                emotion = {"positive": "happiness", "surprise": "surprise", "other": "other"}[label]
            # the real spellings first, where one fits the emotion (or the 3-class label)
            fitting = [cell for cell in pending if cell[0] == emotion or (label == "negative" and cell[0] in NEGATIVE_WEIGHTS)]
            if fitting:
                pending.remove(fitting[0])
                emotion, cell = fitting[0]
            else:
                cell = AU_TEMPLATES[emotion][int(rng.integers(len(AU_TEMPLATES[emotion])))]
            if not cell.endswith(" ") and rng.random() < 0.25:
                cell += " "  # trailing spaces, as in the release
            slots.append(Slot(subject, clip, emotion, cell, onset=int(rng.integers(1000, 9000))))
    plans = plan_samples(config, slots, rng)
    count = max(1, round(config.slash_apex_fraction * len(plans))) if config.slash_apex_fraction > 0 else 0
    for position, index in enumerate(rng.permutation(len(plans))[:count]):
        plan = plans[int(index)]
        outside = plan.offset_frame + int(rng.integers(3, 40)) if position % 2 == 0 else plan.onset_frame - int(rng.integers(3, 40))
        plans[int(index)] = with_sheet_apex(plan, outside)
    looks = looks_for(subjects, config, rng)
    return looks, plans


def sheet_rows(plans: list[SamplePlan], header_row: int) -> list[list[object]]:
    rows = []
    for index, plan in enumerate(plans):
        row = header_row + 1 + index
        apex = plan.apex_frame if plan.apex_in_sheet else plan.sheet_apex
        rows.append(
            [
                f"{plan.subject:03d}",  # text, as released
                plan.episode,
                int(plan.episode.split("_")[1]) if plan.episode.split("_")[1].isdigit() else 1,
                plan.onset_frame,
                apex,
                plan.offset_frame,
                f"=F{row}-D{row}",  # Duration: a formula cell
                "Micro - 1/2",
                plan.au_cell,
                plan.emotion.title(),
                OBJECTIVE_CLASSES[plan.emotion],
                None,
            ]
        )
    return rows


def xlsx_bytes(plans: list[SamplePlan]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "MICRO_MOVEMENTS"
    for row in PREAMBLE:
        sheet.append(list(row))
    sheet.append(list(SHEET_COLUMNS))
    for row in sheet_rows(plans, header_row=len(PREAMBLE) + 1):
        sheet.append(row)
    return workbook_bytes(workbook, "2018-01-01T00:00:00Z")


def generate_samm(
    out_dir: Path | str,
    config: MerSampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    plan: tuple[dict, list[SamplePlan]] | None = None,
) -> MerSampleSummary:
    """Write the corpus under `out_dir` (see the module docstring)."""
    looks, plans = plan if plan is not None else plan_samm(config)
    return write_corpus(out_dir, config, DESIGN, looks, plans, {SHEET_NAME: xlsx_bytes(plans)}, {"fps": 200}, progress, workers)
