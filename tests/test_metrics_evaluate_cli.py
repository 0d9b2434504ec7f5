"""`mertk evaluate avvp|mer` end to end, on the real LLP eval files and on every PRED form."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mertk.corpora.llp_annotations import LLP_CLASSES, NUM_CLASSES, read_split_dense_labels
from mertk.metrics.avvp import METRIC_KEYS, matrices_to_rows
from mertk.metrics.avvp_evaluation import evaluate_avvp_predictions
from mertk.shards.io import write_shard
from mertk.shards.manifest import write_single_output_manifest
from mertk.shards.schema import load_schema
from conftest import shared_data_folder, invoke_mertk

LLP = shared_data_folder("llp") or Path("../shared/data/llp")
needs_llp = pytest.mark.skipif(
    not (LLP / "AVVP_eval_audio.csv").is_file(), reason="needs the real LLP files in ../shared/data/llp (absent in a fresh clone)"
)


def run(*args: str):
    return invoke_mertk(*args)


def ground_truth_rows(split: str) -> list[dict]:
    _, dense = read_split_dense_labels(LLP, split)
    return matrices_to_rows(dense.filenames, dense.audio_v_c_t, dense.visual_v_c_t)


@needs_llp
@pytest.mark.parametrize("split", ["val", "test"])
def test_ground_truth_scores_100_on_all_ten_numbers(tmp_path, split):
    """The dense labels scored against themselves give 100 on all ten numbers, defects and all.

    Why the reference's averaging allows it: F1 is taken per video over the classes that occur
    in its prediction or ground truth, and a video where none occurs scores 1.0. Rows with onset
    >= offset mark nothing on both sides, rows of unknown videos are ignored on both sides, and
    dense classes missing from the weak label are simply true events that the prediction also
    holds; audio-visual is derived as audio AND visual on both sides. So every occurring class
    of every video has TP only, and every empty video (e.g. one whose only row was an empty
    run) scores 1.0 rather than 0/0.
    """
    path = tmp_path / f"gt_{split}.tsv"
    pd.DataFrame(ground_truth_rows(split)).to_csv(path, sep="\t", index=False)
    result = run("evaluate", "avvp", str(path), "--llp", str(LLP), "--split", split, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"segment", "event", "videos"}
    assert payload["videos"] == {"val": 649, "test": 1200}[split]
    for level in ("segment", "event"):
        assert list(payload[level]) == list(METRIC_KEYS)
        assert all(value == 100.0 for value in payload[level].values()), payload
    # the defects are summarised in one warning on stderr
    assert result.stderr.count("ground truth defects") == 1
    assert "rows with onset >= offset" in result.stderr


@needs_llp
def test_table_output_and_a_perturbed_prediction(tmp_path):
    rows = ground_truth_rows("test")
    rng = np.random.default_rng(0)
    kept = [row for row in rows if rng.random() > 0.3]  # drop 30% of the runs
    path = tmp_path / "pred.csv"
    pd.DataFrame(kept).to_csv(path, index=False)
    result = run("evaluate", "avvp", str(path), "--llp", str(LLP), "--split", "test")
    assert result.exit_code == 0, result.output
    assert "Type@AV" in result.stdout and "1200 videos" in result.stdout
    evaluation = evaluate_avvp_predictions(path, LLP, "test")
    assert 0 < evaluation.scores.segment["audio"] < 100
    assert evaluation.scores.event["event"] < 100


def pseudo_label_rows(split: str) -> list[dict]:
    _, dense = read_split_dense_labels(LLP, split)
    rows = []
    for v, filename in enumerate(dense.filenames):
        for modality, matrix in (("audio", dense.audio_v_c_t), ("visual", dense.visual_v_c_t)):
            for segment in range(10):
                active = matrix[v, :, segment]
                rows.append(
                    {
                        "filename": filename,
                        "video_id": filename[:11],
                        "split": split,
                        "modality": modality,
                        "segment": segment,
                        "labels": [LLP_CLASSES[c] for c in np.flatnonzero(active)],
                        "scores": active.astype(np.float32).tolist(),
                    }
                )
    return rows


@needs_llp
def test_pseudo_label_shard_folder(tmp_path):
    schema = load_schema("avvp_pseudo_label", 1)
    rows = pseudo_label_rows("val")
    out = tmp_path / "pseudo"
    half = len(rows) // 2
    write_shard(schema.table_from_rows(rows[:half]), out / "shard-00000.parquet", schema)
    write_shard(schema.table_from_rows(rows[half:]), out / "shard-00001.parquet", schema)
    evaluation = evaluate_avvp_predictions(out, LLP, "val")  # a folder without manifest
    assert evaluation.prediction.kind == "pseudo_label"
    assert evaluation.scores.segment == {key: 100.0 for key in METRIC_KEYS}
    assert evaluation.scores.event == {key: 100.0 for key in METRIC_KEYS}
    # dropping one video's rows: it predicts nothing, and the warning says so
    write_shard(schema.table_from_rows(rows[20:]), out / "shard-00000.parquet", schema)
    evaluation = evaluate_avvp_predictions(out, LLP, "val")
    assert any("1 of 649 val videos have no rows" in warning for warning in evaluation.warnings)


@needs_llp
def test_prediction_shard_folder_with_manifest(tmp_path):
    schema = load_schema("avvp_prediction", 1)
    rows = ground_truth_rows("test")
    out = tmp_path / "predictions"
    shard = out / "predictions.parquet"
    write_shard(schema.table_from_rows(rows), shard, schema)
    write_single_output_manifest(
        out, schema, shard, command="test", parameters={}, inputs_seen=len(rows), inputs_written=len(rows), rows_written=len(rows)
    )
    result = run("evaluate", "avvp", str(out), "--llp", str(LLP), "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["event"]["type"] == 100.0


@needs_llp
@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file or folder"),
        ("filename\tonset\n", "neither the eval layout"),
        ("filename\tmodality\tevent_labels\tonset\toffset\n4YdbENYcIyE_23_33\taudio\tBagpipes\t0\t3\n", "row 0 (4YdbENYcIyE_23_33): unknown class 'Bagpipes'"),
        ("filename\tmodality\tevent_labels\tonset\toffset\n4YdbENYcIyE_23_33\taudio\tDog\t3\t3\n", "onset < offset"),
    ],
)
def test_unreadable_prediction_exits_2(tmp_path, content, message):
    path = tmp_path / "pred.tsv"
    if content is not None:
        path.write_text(content)
    result = run("evaluate", "avvp", str(path), "--llp", str(LLP), "--split", "test")
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_bad_split_and_llp_folder_exit_2(tmp_path):
    path = tmp_path / "pred.tsv"
    path.write_text("filename\tmodality\tevent_labels\tonset\toffset\n")
    result = run("evaluate", "avvp", str(path), "--llp", str(tmp_path), "--split", "train")
    assert result.exit_code == 2 and "split must be 'val' or 'test'" in result.stderr
    result = run("evaluate", "avvp", str(path), "--llp", str(tmp_path), "--split", "val")
    assert result.exit_code == 2 and "no LLP annotation files" in " ".join(result.stderr.split())


def test_evaluate_mer_json_and_shards(tmp_path):
    schema = load_schema("mer_prediction", 1)
    classes = ["happiness", "disgust", "surprise", "repression", "others"]
    rng = np.random.default_rng(1)
    rows = [
        {
            "sample_id": f"sub{s:02d}/EP{i:02d}",
            "dataset": "casme2",
            "subject": f"sub{s:02d}",
            "label": classes[int(rng.integers(5))],
            "prediction": classes[int(rng.integers(5))],
            "probabilities": None,
        }
        for s in range(1, 6)
        for i in range(6)
    ]
    out = tmp_path / "run"
    shard = out / "predictions.parquet"
    write_shard(schema.table_from_rows(rows), shard, schema)
    write_single_output_manifest(out, schema, shard, command="test", parameters={}, inputs_seen=30, inputs_written=30, rows_written=30)
    from sklearn.metrics import f1_score, recall_score

    labels, predictions = [r["label"] for r in rows], [r["prediction"] for r in rows]
    for target in (out, shard):
        result = run("evaluate", "mer", str(target), "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["uf1"] == pytest.approx(f1_score(labels, predictions, labels=classes, average="macro", zero_division=0))
        assert payload["uar"] == pytest.approx(recall_score(labels, predictions, labels=classes, average="macro", zero_division=0))
        assert payload["classes"] == classes and payload["samples"] == 30 and payload["subjects"] == 5
    table = run("evaluate", "mer", str(out), "--protocol", "5class")
    assert table.exit_code == 0 and "pooled" in table.stdout and "repression" in table.stdout


def test_evaluate_mer_bad_input_exits_2(tmp_path):
    result = run("evaluate", "mer", str(tmp_path / "none.csv"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    path = tmp_path / "p.csv"
    path.write_text("sample_id,subject,label,prediction\na,1,others,fear\n")
    result = run("evaluate", "mer", str(path), "--protocol", "5class")
    assert result.exit_code == 2 and "row 0: prediction 'fear'" in result.stderr
    result = run("evaluate", "mer", str(path), "--protocol", "7class")
    assert result.exit_code == 2 and "unknown protocol" in result.stderr
