"""What the generated SAMM, SMIC-HS, CAS(ME)^3 and MMEW corpora share: planning from sheet cells, rendering, truth.

Every corpus is rendered exactly as the CASME II sample is (`mertk.sample_data.casme2`: real
public-domain face photos under a seeded look, planted AUs moving their FACS regions with a
rise-apex-decay profile, head motion and sensor noise); only the names, the sheet, the frame
files and the quirks differ, and those live in each corpus' module, which imports its reader's
layout names.

A corpus module hands `plan_samples` one `Slot` per clip (subject, clip, emotion, the AU cell as
its sheet writes it); the cell is parsed with the readers' own parser, its definite AUs are
planted, one option of each alternative ('or') is planted (and recorded as such in the truth),
and CASME II's mislabels are applied. `write_corpus` renders and writes the frames, the truth
(`ground_truth.parquet`: CASME II's columns plus `dataset`, `alternative`, `measurable`,
`apex_in_sheet`), the per-sample truth flow and `mertk_sample.json`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mertk.au.facs import AU_TABLE, SIDES
from mertk.au.notation import AuLabel, parse_au_cell
from mertk.sample_data.folder import SampleDataError, prepare_sample_folder
from mertk.sample_data.casme2 import (
    GROUND_TRUTH_FLOW_FOLDER,
    GROUND_TRUTH_NAME,
    INFO_NAME,
    Casme2SampleConfig,
    PlantedAu,
    SamplePlan,
    SubjectLook,
    ground_truth_table,
    jpeg_bytes,
    npz_bytes,
    parquet_bytes,
    plant_mislabels,
    render_frames,
    subject_canvas,
    subject_look,
    write_file,
)

# The generators of the other corpora take CASME II's parameters (sizes, motion, noise, mislabels).
MerSampleConfig = Casme2SampleConfig


@dataclass(frozen=True)
class Slot:
    """One clip to plan: its names, emotion and AU cell (as the sheet writes it)."""

    subject: int
    clip: str
    emotion: str
    au_cell: str  # '' where the corpus has no AU coding
    onset: int
    plant_cell: str = ""  # what the frames show where the sheet lists nothing (SMIC); default au_cell


@dataclass(frozen=True)
class CorpusDesign:
    """How a corpus lies on disk. Functions are module-level so that worker processes can take them."""

    dataset: str
    folders: tuple[str, ...]  # top-level folders the generator owns under out_dir
    files: tuple[str, ...]  # top-level files it owns (sheet, truth, info)
    frame_path: Callable[[SamplePlan, int], str]  # relative path of frame `n` of a sample
    encode: Callable[[np.ndarray, int], bytes]  # uint8 RGB frame, JPEG quality -> file bytes
    sample_id: Callable[[SamplePlan], str]  # the reader's sample_id of the sample


@dataclass
class MerSampleSummary:
    out_dir: Path
    dataset: str
    subjects: int
    samples: int
    frames: int
    bytes_written: int
    emotions: dict[str, int]
    missing_labels: int
    unlisted_planted: int
    apex_not_in_sheet: int


def encode_jpeg_colour(rgb: np.ndarray, quality: int) -> bytes:
    return jpeg_bytes(rgb, quality)


def encode_jpeg_grey(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    from mertk.face.landmarks import to_gray

    ok, data = cv2.imencode(".jpg", to_gray(rgb), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SampleDataError("JPEG encoding failed")
    return data.tobytes()


def encode_bmp(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".bmp", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise SampleDataError("BMP encoding failed")
    return data.tobytes()


# --- planning ---------------------------------------------------------------------------------


def measurable(au: int) -> bool:
    """An AU the FACS table gives a facial motion for (AU28, AU43, ... are coded but not drawn)."""
    return au in AU_TABLE


def _directions(label: AuLabel) -> dict[tuple[str, str], np.ndarray]:
    spec = AU_TABLE.get(label.au)
    if spec is None:
        return {}
    sides = SIDES if label.side is None else (label.side,)
    return {(m.region, side): np.array(m.direction_xy(side)) for m in spec.motions for side in sides}


def conflicts(a: AuLabel, b: AuLabel) -> bool:
    """True when two AUs push one region of one side in opposing directions (the truth would be ambiguous)."""
    first, second = _directions(a), _directions(b)
    return any(float(first[key] @ second[key]) <= 0 for key in first.keys() & second.keys())


def _planted_labels(cell: str, rng: np.random.Generator) -> tuple[list[AuLabel], list[tuple[AuLabel, ...]]]:
    """(labels the frames show, the cell's alternative groups as flat option tuples)."""
    coding = parse_au_cell(cell)
    planted = [label for label in coding.labels if measurable(label.au)]
    groups = []
    for group in coding.alternatives:
        options = [option for option in group if all(measurable(l.au) and not any(conflicts(l, p) for p in planted) for l in option)]
        if not options:
            raise SampleDataError(f"AU cell {cell!r}: no option of {group} can be planted beside the others")
        planted.extend(options[int(rng.integers(len(options)))])
        groups.append(tuple(label for option in group for label in option))
    for index, label in enumerate(planted):
        for other in planted[index + 1 :]:
            if conflicts(label, other):
                raise SampleDataError(f"AU cell {cell!r}: {label} and {other} push one region in opposite directions")
    return planted, groups


def plan_samples(config: MerSampleConfig, slots: Sequence[Slot], rng: np.random.Generator, frames: int | None = None) -> list[SamplePlan]:
    """One SamplePlan per slot (timing, planted AUs with amplitudes, head motion, noise), then the
    mislabels of `plant_mislabels` (none when the config's fractions are 0)."""
    frames = frames or config.frames
    plans = []
    for slot in slots:
        cell = slot.au_cell if slot.au_cell else slot.plant_cell
        planted_labels, groups = _planted_labels(cell, rng)
        labelled = tuple(parse_au_cell(slot.au_cell).every_label) if slot.au_cell else ()
        apex_index = int(round(rng.uniform(0.3, 0.55) * (frames - 1)))
        planted = tuple(PlantedAu(l.au, l.side, config.amplitude_scale * float(rng.uniform(*config.amplitude_px))) for l in planted_labels)
        plans.append(
            SamplePlan(
                subject=slot.subject,
                episode=slot.clip,
                onset_frame=slot.onset,
                apex_frame=slot.onset + apex_index,
                offset_frame=slot.onset + frames - 1,
                apex_in_sheet=True,
                emotion=slot.emotion,
                au_cell=slot.au_cell,
                labelled=labelled,
                planted=planted,
                head_xy=tuple(float(v) for v in rng.uniform(-1.0, 1.0, 4)),
                noise_seed=int(rng.integers(2**31)),
                alternatives=tuple(groups),
            )
        )
    if config.missing_fraction > 0 or config.extra_fraction > 0:
        plans, _ = plant_mislabels(plans, config, rng)
    return plans


def looks_for(subjects: Sequence[int], config: MerSampleConfig, rng: np.random.Generator) -> dict[int, SubjectLook]:
    """A seeded look per subject number, in the given order."""
    return {subject: subject_look(index, config, rng) for index, subject in enumerate(subjects)}


def pick(rng: np.random.Generator, items: Sequence, count: int) -> list:
    """`count` distinct items in a seeded order (all of them when there are fewer)."""
    order = rng.permutation(len(items))[:count]
    return [items[int(i)] for i in order]


# --- truth ------------------------------------------------------------------------------------


def truth_table(plans: Sequence[SamplePlan], design: CorpusDesign):
    """CASME II's truth columns, plus `dataset`, `alternative` (the AU is one option of an 'or'),
    `measurable` (the FACS table draws it) and `apex_in_sheet` (the sheet's apex is the true one)."""
    import pyarrow as pa

    table = ground_truth_table(list(plans), sample_id=design.sample_id)
    by_id = {design.sample_id(p): p for p in plans}
    ids = table.column("sample_id").to_pylist()
    aus = table.column("au").to_pylist()
    sides = table.column("side").to_pylist()
    alternative = []
    for sample_id, au, side in zip(ids, aus, sides):
        plan = by_id[sample_id]
        alternative.append(any((l.au, l.side) == (au, side) for group in plan.alternatives for l in group))
    table = table.append_column("dataset", pa.array([design.dataset] * len(ids), pa.string()))
    table = table.append_column("alternative", pa.array(alternative, pa.bool_()))
    table = table.append_column("measurable", pa.array([measurable(au) for au in aus], pa.bool_()))
    return table.append_column("apex_in_sheet", pa.array([by_id[i].apex_in_sheet for i in ids], pa.bool_()))


# --- writing ----------------------------------------------------------------------------------


def _write_subject(subject: int, look: SubjectLook, plans: list[SamplePlan], config: MerSampleConfig, out_dir: Path, design: CorpusDesign) -> tuple[int, SubjectLook, int, int]:
    """Render and write every sample of one subject (one unit of work; runs in a worker process)."""
    canvas = subject_canvas(subject, look, config)
    total_bytes = total_frames = 0
    for plan in plans:
        frames, truth = render_frames(canvas, plan, config)
        for offset, rgb in enumerate(frames):
            total_bytes += write_file(out_dir / design.frame_path(plan, plan.onset_frame + offset), design.encode(rgb, config.jpeg_quality))
        total_frames += len(frames)
        flow_name = design.sample_id(plan).replace("/", "_") + ".npz"
        total_bytes += write_file(out_dir / GROUND_TRUTH_FLOW_FOLDER / flow_name, npz_bytes(truth))
    return subject, canvas.look, total_frames, total_bytes


def write_corpus(
    out_dir: Path | str,
    config: MerSampleConfig,
    design: CorpusDesign,
    looks: dict[int, SubjectLook],
    plans: list[SamplePlan],
    sheets: dict[str, bytes],
    info: dict,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> MerSampleSummary:
    """Render and write the corpus: frames, `sheets` (name -> bytes), truth table and flows, info."""
    from concurrent.futures import as_completed

    from mertk.execution.pools import process_pool

    out_dir = Path(out_dir)
    prepare_sample_folder(out_dir, design.folders + design.files + (GROUND_TRUTH_FLOW_FOLDER, GROUND_TRUTH_NAME), design.dataset)
    jobs = [(subject, look, [p for p in plans if p.subject == subject]) for subject, look in looks.items()]
    jobs = [job for job in jobs if job[2]]
    results = {}
    if workers <= 1:
        for subject, look, subject_plans in jobs:
            results[subject] = _write_subject(subject, look, subject_plans, config, out_dir, design)
            if progress is not None:
                progress(len(subject_plans))
    else:
        with process_pool(workers) as pool:  # started from the fork server (see mertk.execution.pools)
            futures = {pool.submit(_write_subject, subject, look, subject_plans, config, out_dir, design): len(subject_plans) for subject, look, subject_plans in jobs}
            for future in as_completed(futures):
                result = future.result()
                results[result[0]] = result
                if progress is not None:
                    progress(futures[future])
    total_bytes = sum(r[3] for r in results.values())
    for name, data in sheets.items():
        total_bytes += write_file(out_dir / name, data)
    total_bytes += write_file(out_dir / GROUND_TRUTH_NAME, parquet_bytes(truth_table(plans, design)))
    emotions: dict[str, int] = {}
    for plan in plans:
        emotions[plan.emotion] = emotions.get(plan.emotion, 0) + 1
    summary = MerSampleSummary(
        out_dir=out_dir,
        dataset=design.dataset,
        subjects=len(results),
        samples=len(plans),
        frames=sum(r[2] for r in results.values()),
        bytes_written=0,
        emotions=dict(sorted(emotions.items())),
        missing_labels=sum(any((l.au, l.side) not in {(p.au, p.side) for p in s.planted} and measurable(l.au) for l in s.labelled if not _is_option(l, s)) for s in plans),
        unlisted_planted=sum(any((p.au, p.side) not in {(l.au, l.side) for l in s.labelled} for p in s.planted) for s in plans) if any(s.labelled for s in plans) else 0,
        apex_not_in_sheet=sum(not s.apex_in_sheet for s in plans),
    )
    full_info = {
        "generator": f"mertk sample-data {design.dataset}",
        "config": asdict(config),
        "subjects": {str(subject): asdict(results[subject][1]) for subject in sorted(results)},
        "samples": summary.samples,
        "frames": summary.frames,
        "emotions": summary.emotions,
        "missing_labels": summary.missing_labels,
        "unlisted_planted": summary.unlisted_planted,
        "apex_not_in_sheet": summary.apex_not_in_sheet,
        "ground_truth_flow": "npz per sample: flow_hw2, expression_flow_hw2 (float32 H,W,2, OpenCV forward convention onset->apex), head_translation_xy (2,)",
        **info,
    }
    total_bytes += write_file(out_dir / INFO_NAME, (json.dumps(full_info, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    summary.bytes_written = total_bytes
    return summary


def _is_option(label: AuLabel, plan: SamplePlan) -> bool:
    return any(label in group for group in plan.alternatives)


def with_sheet_apex(plan: SamplePlan, sheet_apex: int | str) -> SamplePlan:
    """The plan with a sheet apex that is not the true one (the truth keeps the true apex)."""
    return replace(plan, apex_in_sheet=False, sheet_apex=sheet_apex)
