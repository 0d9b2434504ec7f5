"""`mertk evaluate dave`: the UnAV JSON and dave_prediction shards give the same figures; bad input is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import invoke_mertk
from mertk.cli.app import app
from mertk.shards.io import write_shard
from mertk.shards.schema import load_schema

runner = CliRunner()


@pytest.fixture()
def annotations(tmp_path) -> Path:
    database = {
        "a": {"subset": "test", "duration": 30, "annotations": [{"segment": [1.0, 5.0], "label": "dog", "label_id": 3}, {"segment": [10.0, 20.0], "label": "cat", "label_id": 4}]},
        "b": {"subset": "test", "duration": 12.5, "annotations": [{"segment": [2.0, 6.0], "label": "dog", "label_id": 3}]},
        "c": {"subset": "train", "duration": 10, "annotations": [{"segment": [0.0, 1.0], "label": "dog", "label_id": 3}]},
    }
    path = tmp_path / "unav100_annotations.json"
    path.write_text(json.dumps({"version": "t", "database": database}))
    return path


PREDICTIONS = [("a", 3, 1.2, 5.0, 0.9), ("a", 4, 12.0, 19.0, 0.8), ("b", 3, 0.0, 3.0, 0.7), ("b", 3, 2.0, 6.5, 0.6)]


def test_json_and_shards_agree_and_match_hand_figures(annotations, tmp_path):
    unav_json = tmp_path / "pred.json"
    database: dict[str, list] = {}
    for video, label, start, end, score in PREDICTIONS:
        database.setdefault(video, []).append({"segment": [start, end], "label_id": label, "scores": score})
    unav_json.write_text(json.dumps({"database": database}))
    schema = load_schema("dave_prediction", 1)
    rows = [dict(video_id=v, label_id=l, label="dog" if l == 3 else "cat", start=s, end=e, score=p) for v, l, s, e, p in PREDICTIONS]
    write_shard(schema.table_from_rows(rows), tmp_path / "shards" / "part.parquet", schema)
    outputs = []
    for pred in (unav_json, tmp_path / "shards"):
        result = runner.invoke(app, ["evaluate", "dave", str(pred), "--unav", str(annotations), "--split", "test", "--json"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    figures = outputs[0]
    assert figures["videos"] == 2 and list(figures["map"]) == [f"0.{k}" for k in range(1, 10)]
    # @0.5: cat AP 1 (tIoU 0.7); dog: a hit (0.95), then b's 0.0-3.0 misses (tIoU 0.2), then b's 2.0-6.5 hits (0.89) -> AP 1/2 + 1/2 * 2/3
    assert figures["map"]["0.5"] == pytest.approx(100 * (1 + 0.5 + 0.5 * 2 / 3) / 2)
    table = runner.invoke(app, ["evaluate", "dave", str(unav_json), "--unav", str(annotations)])
    assert table.exit_code == 0 and "@0.9" in table.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("{broken", "not a readable JSON"),
        (json.dumps({"database": {"a": [{"segment": [1, 2], "label_id": "dog", "scores": 0.5}]}}), "video a, prediction 0"),
        (json.dumps({"database": {"a": [{"segment": [1, 2], "label_id": 300, "scores": 0.5}]}}), "label_id 300"),
        (json.dumps({"videos": []}), 'expected {"database"'),
    ],
)
def test_bad_predictions_are_one_line_with_exit_2(annotations, tmp_path, content, message):
    pred = tmp_path / "pred.json"
    pred.write_text(content)
    result = invoke_mertk("evaluate", "dave", str(pred), "--unav", str(annotations), "--split", "test")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_unknown_split_and_missing_annotations(annotations, tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"database": {}}))
    result = invoke_mertk("evaluate", "dave", str(pred), "--unav", str(annotations), "--split", "dev")
    assert result.exit_code == 2 and "unknown split 'dev'" in result.output
    result = invoke_mertk("evaluate", "dave", str(pred), "--unav", str(tmp_path / "none"), "--split", "test")
    assert result.exit_code == 2 and "no unav100_annotations.json" in result.output
