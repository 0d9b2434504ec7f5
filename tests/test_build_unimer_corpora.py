"""build-unimer over several corpora, and the MER protocols on them: end to end on the sample corpora."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import invoke_mertk
from mertk.cli.app import app
from mertk.cli.failures import describe
from mertk.sample_data import casme3
from mertk.sample_data.megc2019 import Megc2019SampleConfig, generate_megc2019
from mertk.training.synthetic import write_synthetic_unimer


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    generate_megc2019(root / "megc", Megc2019SampleConfig(subjects=2, samples_per_subject=3, frames=10, seed=2))
    casme3.generate_casme3(root / "casme3", replace(casme3.SCALES["default"], subjects=2, samples_per_subject=4, frames=10, seed=2))
    out = root / "out"
    result = CliRunner().invoke(app, [
        "build-unimer", "--casme2", str(root / "megc" / "casme2"), "--samm", str(root / "megc" / "samm"),
        "--smic", str(root / "megc" / "smic"), "--casme3", str(root / "casme3"), "--out", str(out), "--no-report",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "unimer"


def _rows(unimer: Path) -> list[dict]:
    return [row for path in sorted(unimer.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_rows_carry_their_corpus_with_unique_ids(built):
    rows = _rows(built)
    manifest = json.loads((built / "_manifest.json").read_text())
    assert manifest["schema"] == "unimer_sample.v2"
    assert manifest["inputs_written"] + manifest["inputs_rejected"] == manifest["inputs_seen"] == len(rows) + manifest["inputs_rejected"]
    ids = [r["sample_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert {r["dataset"] for r in rows} == {"casme2", "samm", "smic", "casme3"}
    for row in rows:
        assert row["sample_id"].startswith(row["dataset"] + "/")
        assert row["fps"] == {"casme2": 200, "samm": 200, "smic": 100, "casme3": 30}[row["dataset"]]
    assert any(r["sample_id"].startswith("samm/0") and r["sample_id"].count("/") == 1 for r in rows)  # samm/006_1_2
    casme3 = [r for r in rows if r["dataset"] == "casme3"]
    assert any(r["offset_estimated"] for r in casme3) and not any(r["offset_estimated"] for r in rows if r["dataset"] != "casme3")
    assert manifest["summary"]["datasets"] == {d: sum(r["dataset"] == d for r in rows) for d in ("casme2", "casme3", "samm", "smic")}


def test_corpora_without_au_coding_get_captions_from_the_flow(built):
    rows = _rows(built)
    smic = [r for r in rows if r["dataset"] == "smic"]
    assert smic and all(r["au_source"] == "flow" and r["au_labels"] == [] for r in smic)
    assert all("no AU coding" in r["caption"] for r in smic)
    named = [r for r in smic if "(AU" in r["caption"]]
    assert len(named) >= len(smic) - 1  # the flow shows the planted motion
    assert all(r["au_source"] == "labels" for r in rows if r["dataset"] != "smic")


def test_alternatives_are_settled_and_recorded(built):
    rows = [r for r in _rows(built) if r["au_alternatives"]]
    assert rows, "the SAMM sample has 'or' cells"
    for row in rows:
        for item in row["au_alternatives"]:
            assert " or " in item["options"]
            assert item["chosen"] is None or item["chosen"] in item["options"].split(" or ")


def test_temporal_answers_use_the_corpus_frame_rate(built):
    for row in _rows(built):
        answer = next(i["response"] for i in row["instructions"] if i["task"] == "temporal_question")
        total_ms = (row["offset_frame"] - row["onset_frame"]) * 1000 / row["fps"]
        assert f"lasts {total_ms:.0f} ms" in answer


def test_validate_reads_v2_and_still_v1(built, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["validate", str(built)]).exit_code == 0
    v1 = write_synthetic_unimer(tmp_path / "v1", subjects=2, per_subject=2)
    result = runner.invoke(app, ["validate", str(v1)])
    assert result.exit_code == 0 and "unimer_sample.v1" in result.output


def _train(built: Path, out: Path, *options: str) -> dict:
    result = CliRunner().invoke(app, ["train", "mer", str(built), "--out", str(out), "--epochs", "1", "--semantic-encoder", "region-stats", *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_megc2019_protocol_reports_pooled_and_per_dataset(built, tmp_path):
    metrics = _train(built, tmp_path / "megc", "--protocol", "megc2019")
    listed = (built.parent.parent / "megc" / "combined_3class_gt.csv").read_text().splitlines()
    assert metrics["pooled"]["samples"] == len(listed)  # exactly the listed clips the folders hold
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic"}
    assert sum(d["samples"] for d in metrics["per_dataset"].values()) == len(listed)
    assert metrics["composite"]["found"] == len(listed) and metrics["composite"]["missing"] == 442 - len(listed)
    for figures in [metrics["pooled"], *metrics["per_dataset"].values()]:
        assert 0.0 <= figures["uf1"] <= 1.0 and 0.0 <= figures["uar"] <= 1.0


def test_cross_corpus_and_casme3_protocols(built, tmp_path):
    metrics = _train(built, tmp_path / "cross", "--protocol", "3class", "--train-on", "samm,smic", "--test-on", "casme2")
    assert metrics["cross_corpus"] == {"train_on": ["samm", "smic"], "test_on": ["casme2"]}
    assert set(metrics["per_dataset"]) == {"casme2"} and len(metrics["folds"]) == 1
    metrics = _train(built, tmp_path / "c3", "--protocol", "casme3-4class")
    assert set(metrics["per_dataset"]) == {"casme3"} and metrics["classes"] == ["negative", "positive", "surprise", "others"]
    result = invoke_mertk("train", "mer", str(built), "--out", str(tmp_path / "bad"), "--protocol", "3class", "--train-on", "samm")
    assert result.exit_code == 2 and "--train-on and --test-on" in result.output


def test_build_needs_a_corpus_and_names_a_wrong_folder(built, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["build-unimer", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "at least one corpus folder" in " ".join(result.output.split())
    casme2 = built.parent.parent / "megc" / "casme2"
    result = runner.invoke(app, ["build-unimer", "--samm", str(casme2), "--out", str(tmp_path / "o")])
    line, status = describe(result.exception)  # what `mertk` prints (its failure handler), and the exit status
    assert status == 2 and "no SAMM coding sheet found" in line and "CASME2_RAW_selected" in line


def test_predict_works_for_models_of_the_corpora_protocols(built, tmp_path):
    """`mertk predict mer` on a megc2019 fold model reproduces the run's own held-out predictions;
    samples outside the composite list get no label; a cross-corpus fold model predicts too."""
    run = tmp_path / "megc"
    _train(built, run, "--protocol", "megc2019", "--device", "cpu", "--threads", "1")
    own = pq.read_table(run / "predictions.parquet").to_pylist()
    subject = own[0]["subject"]
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "mer", str(built), "--model", str(run), "--fold", subject, "--out", str(tmp_path / "p"), "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    predicted = {row["sample_id"]: row for row in pq.read_table(tmp_path / "p" / "predictions.parquet").to_pylist()}
    assert len(predicted) == len(_rows(built))
    for row in (r for r in own if r["subject"] == subject):
        again = predicted[row["sample_id"]]
        assert (again["label"], again["prediction"], again["probabilities"]) == (row["label"], row["prediction"], row["probabilities"])
    listed = {row["sample_id"] for row in own}
    assert all(row["label"] == "" for sample_id, row in predicted.items() if sample_id not in listed)  # casme3: not in the list

    cross = tmp_path / "cross"
    metrics = _train(built, cross, "--protocol", "3class", "--train-on", "samm,smic", "--test-on", "casme2", "--device", "cpu")
    fold = metrics["folds"][0]["subject"]
    assert fold == "samm+smic-to-casme2" and metrics["composite"] is None
    result = runner.invoke(app, ["predict", "mer", str(built), "--model", str(cross), "--fold", fold, "--out", str(tmp_path / "pc"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "pc" / "predictions.parquet").num_rows == len(_rows(built))


def test_onset_face_does_not_swell_where_the_detector_box_is_a_pyramid_step_too_large():
    """Subject 10 of the 16 x 8 CAS(ME)^3 sample (Grace Hopper, 256x192): shrunk to 240 pixels
    the detector's box is a fifth too large and the 68-point fit in it implies that box again,
    so the refit alone kept an eye distance a third too large and every region misplaced (all 10
    of its labelled AUs unsupported). The default second detector width finds the tight box."""
    from mertk.face import to_gray
    from mertk.face.landmarks import inter_ocular_distance
    from mertk.sample_data.casme2 import subject_canvas
    from mertk.unimer.measure import detect_onset_box, face_from_box
    from mertk.unimer.parameters import UnimerParameters

    config = replace(casme3.SCALES["default"], subjects=16, samples_per_subject=8)
    looks, _ = casme3.plan_casme3(config)
    canvas = subject_canvas(10, looks[10], config)
    grey = to_gray(canvas.neutral_rgb)
    truth_iod = inter_ocular_distance(canvas.points_68_2)  # where the generator planted the regions
    params = UnimerParameters()
    face = face_from_box(grey, detect_onset_box(grey, params), params)
    assert face.detected and abs(face.inter_ocular_px / truth_iod - 1) < 0.05, (face.inter_ocular_px, truth_iod)
