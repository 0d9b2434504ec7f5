"""Generated SAMM, SMIC-HS, CAS(ME)^3, MMEW and MEGC2019 samples: real layouts and quirks, readable, truthful, deterministic."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from mertk.au.facs import AU_TABLE, SIDES, region_box, rigid_reference_box
from conftest import invoke_mertk
from mertk.cli.app import app
from mertk.corpora.casme2 import read_casme2
from mertk.corpora.casme3 import SHEET_NAME as CASME3_SHEET
from mertk.corpora.casme3 import read_casme3
from mertk.corpora.megc2019 import LIST_NAME, load_composite_list, select_composite
from mertk.corpora.mmew import SHEET_NAME as MMEW_SHEET
from mertk.corpora.mmew import read_mmew
from mertk.corpora.samm import SHEET_NAME as SAMM_SHEET
from mertk.corpora.samm import read_samm
from mertk.corpora.smic import read_smic
from mertk.face import find_face
from mertk.sample_data import casme3, mmew, samm, smic
from mertk.sample_data.casme2 import GROUND_TRUTH_FLOW_FOLDER, GROUND_TRUTH_NAME
from mertk.sample_data.megc2019 import Megc2019SampleConfig, generate_megc2019

GENERATORS = {
    "samm": (samm.generate_samm, read_samm, samm.SCALES["default"]),
    "smic": (smic.generate_smic, read_smic, smic.SCALES["default"]),
    "casme3": (casme3.generate_casme3, read_casme3, casme3.SCALES["default"]),
    "mmew": (mmew.generate_mmew, read_mmew, mmew.SCALES["default"]),
}


def tiny(corpus: str):
    base = GENERATORS[corpus][2]
    return replace(base, subjects=2, samples_per_subject=3, frames=min(base.frames, 16), seed=5)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for corpus, (generate, _, _) in GENERATORS.items():
        out[corpus] = tmp_path_factory.mktemp(corpus)
        generate(out[corpus], tiny(corpus))
    return out


@pytest.mark.parametrize("corpus", list(GENERATORS))
def test_reader_reads_every_generated_clip(corpora, corpus):
    listing = GENERATORS[corpus][1](corpora[corpus])
    truth = pd.read_parquet(corpora[corpus] / GROUND_TRUTH_NAME)
    assert listing.rejections == []
    assert len(listing.samples) == 6
    assert [s.sample_id for s in listing.samples] == list(dict.fromkeys(truth["sample_id"])) or corpus == "smic"
    assert {s.sample_id for s in listing.samples} == set(truth["sample_id"])
    by_id = {s.sample_id: s for s in listing.samples}
    for sample_id, rows in truth.groupby("sample_id"):
        sample, first = by_id[sample_id], rows.iloc[0]
        assert sample.onset_frame == first.onset_frame
        if first.apex_in_sheet and corpus != "smic":
            assert sample.apex_frame == first.apex_frame
        else:
            assert sample.apex_frame is None and sample.apex_note  # left to the motion curve, flagged
        assert sample.offset_frame == first.offset_frame or sample.offset_estimated
        assert (corpora[corpus] / GROUND_TRUTH_FLOW_FOLDER / f"{sample_id.replace('/', '_')}.npz").is_file()
    if corpus == "smic":
        assert not truth["labelled"].any() and truth["planted"].all()
    else:
        labelled = {(r.sample_id, r.au, r.side if isinstance(r.side, str) else None) for r in truth[truth.labelled].itertuples()}
        read = {(s.sample_id, l.au, l.side) for s in listing.samples for l in s.au_labels + tuple(x for g in s.au_alternatives for o in g for x in o)}
        assert labelled == read  # the sheet says what the truth says is labelled


def test_samm_sheet_quirks_in_the_default_corpus(corpora):
    _, plans = samm.plan_samm(samm.SCALES["default"])
    cells = {p.au_cell for p in plans}
    for _, cell in samm.REQUIRED_CELLS:
        assert cell in cells
    assert any(c.endswith(" ") for c in cells) and any(" or " in c for c in cells)
    assert any(not p.apex_in_sheet and not p.onset_frame <= p.sheet_apex <= p.offset_frame for p in plans)
    workbook = openpyxl.load_workbook(corpora["samm"] / SAMM_SHEET)  # formulas as written
    rows = list(workbook.active.iter_rows(values_only=True))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "Subject")
    assert header >= 4 and rows[0][0].startswith("SAMM")  # title and notes rows above the header
    assert list(rows[header]) == list(samm.SHEET_COLUMNS)
    data = rows[header + 1 :]
    assert all(isinstance(r[0], str) and len(r[0]) == 3 for r in data)  # subjects as text: '006'
    assert all(isinstance(r[6], str) and r[6].startswith("=") for r in data)  # Duration: a formula
    assert all(r[9] == r[9].title() for r in data)


def test_casme3_and_mmew_sheet_quirks(corpora):
    _, plans = casme3.plan_casme3(casme3.SCALES["default"])
    assert {cell for _, cell in casme3.REQUIRED_CELLS} <= {p.au_cell for p in plans}
    assert any(p.sheet_apex == 0 for p in plans) and any(p.sheet_offset == 0 for p in plans)
    assert any(isinstance(p.sheet_apex, int) and 0 < p.sheet_apex < p.onset_frame for p in plans)
    rows = list(openpyxl.load_workbook(corpora["casme3"] / CASME3_SHEET).active.iter_rows(values_only=True))
    assert all(isinstance(cell, str) for row in rows for cell in row)  # every cell text
    sheet = casme3.xlsx_bytes(plans)
    import io

    emotions = {r[-1] for r in list(openpyxl.load_workbook(io.BytesIO(sheet)).active.iter_rows(values_only=True))[1:]}
    assert {"Others", "others", "sad", "happy"} <= emotions
    _, plans = mmew.plan_mmew(mmew.SCALES["default"])
    assert {cell for _, cell in mmew.REQUIRED_CELLS} <= {p.au_cell for p in plans}
    rows = list(openpyxl.load_workbook(corpora["mmew"] / MMEW_SHEET).active.iter_rows(values_only=True))
    assert rows[0] == mmew.SHEET_COLUMNS


def test_smic_names_both_padded_and_unpadded(corpora):
    subjects = sorted(p.name for p in (corpora["smic"] / "HS").iterdir())
    assert any(len(s) == 3 for s in subjects) and any(len(s) == 2 for s in subjects), subjects
    assert all(p.suffix == ".bmp" for p in (corpora["smic"] / "HS").rglob("image*"))


def _measured_along(folder: Path, sample, planted_rows) -> list[tuple[float, float]]:
    onset = cv2.imread(sample.frame_file(sample.onset_frame), cv2.IMREAD_GRAYSCALE)
    apex_number = int(planted_rows.iloc[0].apex_frame)
    apex = cv2.imread(sample.frame_file(apex_number), cv2.IMREAD_GRAYSCALE)
    points = find_face(onset).points_68_2
    flow = cv2.calcOpticalFlowFarneback(onset, apex, None, 0.5, 3, 9, 5, 5, 1.1, 0)
    flow -= np.median(flow[rigid_reference_box(points).mask(onset.shape)], axis=0)
    truth = np.load(folder / GROUND_TRUTH_FLOW_FOLDER / f"{sample.sample_id.replace('/', '_')}.npz")["expression_flow_hw2"]
    out = []
    for row in planted_rows.itertuples():
        motion = AU_TABLE[int(row.au)].primary
        for side in [row.side] if isinstance(row.side, str) else SIDES:
            mask = region_box(points, motion.region, side).mask(onset.shape)
            direction = np.array(motion.direction_xy(side))
            out.append((float(truth[mask].mean(axis=0) @ direction), float(flow[mask].mean(axis=0) @ direction)))
    return out


@pytest.mark.parametrize("corpus", list(GENERATORS))
def test_planted_motion_is_in_the_frames(corpora, corpus):
    listing = GENERATORS[corpus][1](corpora[corpus])
    truth = pd.read_parquet(corpora[corpus] / GROUND_TRUTH_NAME)
    planted = truth[truth.planted & truth.measurable]
    checked = []
    for sample in listing.samples[:3]:
        rows = planted[planted.sample_id == sample.sample_id]
        if len(rows):
            checked += _measured_along(corpora[corpus], sample, rows)
    assert len(checked) >= 3
    for truth_along, measured_along in checked:
        assert truth_along > 0.3 and measured_along > 0.4 * truth_along, (corpus, checked)


def test_planted_amplitudes_follow_the_face_on_frames_taller_than_casme2():
    """At SAMM's own 2040x1088 the face is 2.27 times a CASME II face: so is its motion (in
    frame pixels the same amplitude would be a sub-pixel shift on the aligned face crop)."""
    small = samm.SCALES["default"]
    large = replace(small, width=2040, height=1088)
    low, high = small.amplitude_px
    small_amplitudes = [p.amplitude_px for plan in samm.plan_samm(small)[1] for p in plan.planted]
    large_amplitudes = [p.amplitude_px for plan in samm.plan_samm(large)[1] for p in plan.planted]
    assert small.amplitude_scale == 1.0 and all(low <= a <= high for a in small_amplitudes)
    factor = 1088 / 480
    assert large.amplitude_scale == pytest.approx(factor)
    assert all(low * factor <= a <= high * factor for a in large_amplitudes)
    # the same seeded draws, scaled: the plans differ in nothing else
    assert large_amplitudes == pytest.approx([a * factor for a in small_amplitudes])


def test_same_seed_same_bytes(corpora, tmp_path):
    again = tmp_path / "again"
    mmew.generate_mmew(again, tiny("mmew"), workers=2)
    files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    first, second = files(corpora["mmew"]), files(again)
    assert first.keys() == second.keys() and all(first[k] == second[k] for k in first)
    other = replace(tiny("mmew"), seed=6)
    assert mmew.xlsx_bytes(mmew.plan_mmew(other)[1]) != mmew.xlsx_bytes(mmew.plan_mmew(tiny("mmew"))[1])


def test_megc2019_sample_list_is_the_real_one_restricted_to_the_clips_made(tmp_path):
    out = tmp_path / "megc"
    summary = generate_megc2019(out, Megc2019SampleConfig(subjects=2, samples_per_subject=2, frames=10, seed=1))
    restricted = (out / LIST_NAME).read_bytes()
    shipped = (Path(__file__).resolve().parents[1] / "toolkit" / "corpora" / "data" / LIST_NAME).read_bytes()
    lines = restricted.split(b"\r\n")[:-1]
    assert lines and all(line + b"\r\n" in shipped for line in lines)
    samples = read_casme2(out / "casme2").samples + read_samm(out / "samm").samples + read_smic(out / "smic").samples
    entries = load_composite_list(restricted.decode())
    selection = select_composite(samples, entries)
    assert len(selection.samples) == len(entries) and selection.missing == [] and selection.label_disagreements == []
    assert set(summary.listed) == {"casme2", "samm", "smic"} and sum(summary.listed.values()) == len(entries)
    full = select_composite(samples)  # by the shipped list: the rest is reported missing
    assert len(full.samples) == len(entries) and len(full.missing) == 442 - len(entries)
    unlisted = {s.qualified_id for s in samples} - {s.qualified_id for s in selection.samples}
    assert unlisted, "some generated clips lie outside the composite (e.g. 'other' emotions)"


def test_cli_writes_a_corpus_and_refuses_a_foreign_folder(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sample-data", "casme3", "--out", str(tmp_path / "c3"), "--subjects", "1", "--samples-per-subject", "2", "--frames", "8"])
    assert result.exit_code == 0, result.output
    assert len(read_casme3(tmp_path / "c3").samples) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    for corpus in ("samm", "smic", "casme3", "mmew", "megc2019"):
        result = invoke_mertk("sample-data", corpus, "--out", str(tmp_path / "mine"))
        assert result.exit_code == 2 and "not a generated sample corpus" in " ".join(result.output.split()), corpus
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
