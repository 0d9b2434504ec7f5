"""Shard writing, manifests and the resumable sharded runner."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mertk.shards import io as shard_io
from mertk.shards.dataset import read_shards
from mertk.shards.io import ShardTypeError, file_sha256, shard_schema_key, write_shard
from mertk.errors import ResumeMismatchError
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import Manifest, Rejection, ShardResult
from mertk.shards.schema import SchemaError, available_schemas, load_schema, parse_arrow_type

PSEUDO = load_schema("avvp_pseudo_label", 1)


def pseudo_row(segment: int, modality: str = "audio") -> dict:
    return {
        "filename": "BjCEufrlXm4_20_30",
        "video_id": "BjCEufrlXm4",
        "split": "train",
        "modality": modality,
        "segment": segment,
        "labels": ["Speech", "Dog"],
        "scores": [0.25] * 25,
    }


def process_units(units: list[int]) -> ShardResult:
    """Units divisible by 5 are rejected; the others become one row each."""
    rows, written, rejected = [], [], []
    for unit in units:
        if unit % 5 == 0:
            rejected.append(Rejection(input=f"video{unit}", reason="unit divisible by five", file=f"feats/{unit}.npy"))
        else:
            rows.append(pseudo_row(unit % 10))
            written.append(f"video{unit}")
    return ShardResult(PSEUDO.table_from_rows(rows), written, rejected)


def test_every_shipped_schema_loads_and_round_trips_through_arrow():
    keys = available_schemas()
    assert {"unimer_sample.v1", "avvp_pseudo_label.v1", "mer_prediction.v1", "avvp_prediction.v1"} <= set(keys)
    for key in keys:
        name, version = key.rsplit(".v", 1)
        schema = load_schema(name, int(version))
        empty = schema.table_from_rows([])
        assert empty.schema.names == [c.name for c in schema.columns]


def test_type_parser_handles_nested_types_and_rejects_unknown_ones():
    parsed = parse_arrow_type("list<struct<au:int32, side:string>>")
    assert parsed == pa.list_(pa.struct([("au", pa.int32()), ("side", pa.string())]))
    with pytest.raises(SchemaError, match="unknown type"):
        parse_arrow_type("list<decimal>")
    with pytest.raises(SchemaError, match="unknown schema"):
        load_schema("avvp_pseudo_label", 99)


def test_write_shard_records_schema_and_reads_back(tmp_path: Path):
    path = tmp_path / "a.parquet"
    digest = write_shard(PSEUDO.table_from_rows([pseudo_row(0), pseudo_row(1, "visual")]), path, PSEUDO)
    assert digest == file_sha256(path)
    assert shard_schema_key(path) == ("avvp_pseudo_label", 1)
    table = pq.read_table(path)
    assert table.column("modality").to_pylist() == ["audio", "visual"]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_write_shard_refuses_a_table_with_other_columns(tmp_path: Path):
    table = PSEUDO.table_from_rows([pseudo_row(0)]).drop_columns(["scores"])
    with pytest.raises(ShardTypeError, match="missing \\['scores'\\]"):
        write_shard(table, tmp_path / "a.parquet", PSEUDO)


def test_interrupted_write_leaves_no_partial_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_write = pq.write_table

    def write_then_die(table, where, **kwargs):
        real_write(table.slice(0, 1), where, **kwargs)  # part of the data reaches the disk ...
        raise KeyboardInterrupt  # ... and then the run is interrupted

    monkeypatch.setattr(shard_io.pq, "write_table", write_then_die)
    target = tmp_path / "shard.parquet"
    with pytest.raises(KeyboardInterrupt):
        write_shard(PSEUDO.table_from_rows([pseudo_row(0), pseudo_row(1)]), target, PSEUDO)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_run_sharded_counts_every_input_and_is_deterministic(tmp_path: Path):
    kwargs = dict(command="test", parameters={"k": 1}, shard_size=4, pre_rejections=[Rejection("row 7", "bad sheet row")])
    first = run_sharded(tmp_path / "a", PSEUDO, list(range(1, 11)), process_units, **kwargs)
    second = run_sharded(tmp_path / "b", PSEUDO, list(range(1, 11)), process_units, **kwargs)
    assert first.inputs_seen == 11
    assert first.inputs_written == 8 and first.inputs_rejected == 3
    assert first.rows_written == 8 == read_shards(tmp_path / "a").num_rows
    assert [s["rows"] for s in first.shards] == [4, 3, 1]  # shards hold units 1-4, 5-8, 9-10
    assert {r["reason"] for r in first.rejections} == {"bad sheet row", "unit divisible by five"}
    assert (tmp_path / "a" / "_manifest.json").read_bytes() == (tmp_path / "b" / "_manifest.json").read_bytes()
    for shard in first.shards:
        assert (tmp_path / "a" / shard["path"]).read_bytes() == (tmp_path / "b" / shard["path"]).read_bytes()


def test_interrupted_run_resumes_without_redoing_complete_shards(tmp_path: Path):
    calls: list[list[int]] = []

    def failing_on_third_shard(units: list[int]) -> ShardResult:
        calls.append(units)
        if units[0] == 9:
            raise KeyboardInterrupt
        return process_units(units)

    units = list(range(1, 11))
    with pytest.raises(KeyboardInterrupt):
        run_sharded(tmp_path / "run", PSEUDO, units, failing_on_third_shard, command="t", parameters={}, shard_size=4)
    assert not (tmp_path / "run" / "_manifest.json").exists()
    calls.clear()

    def recording(units: list[int]) -> ShardResult:
        calls.append(units)
        return process_units(units)

    resumed = run_sharded(tmp_path / "run", PSEUDO, units, recording, command="t", parameters={}, shard_size=4)
    assert calls == [[9, 10]]  # only the unfinished shard ran again
    fresh = run_sharded(tmp_path / "fresh", PSEUDO, units, process_units, command="t", parameters={}, shard_size=4)
    assert resumed.shards == fresh.shards  # same bytes as an uninterrupted run


def test_resume_refuses_a_directory_made_with_other_parameters(tmp_path: Path):
    run_sharded(tmp_path, PSEUDO, [1, 2], process_units, command="t", parameters={"threshold": 0.5}, shard_size=4)
    with pytest.raises(ResumeMismatchError, match="other parameters"):
        run_sharded(tmp_path, PSEUDO, [1, 2], process_units, command="t", parameters={"threshold": 0.6}, shard_size=4)


def test_process_that_loses_an_input_is_an_error(tmp_path: Path):
    def loses_one(units: list[int]) -> ShardResult:
        return ShardResult(PSEUDO.table_from_rows([pseudo_row(0)]), ["only-one"], [])

    with pytest.raises(RuntimeError, match="every input must be written or rejected"):
        run_sharded(tmp_path, PSEUDO, [1, 2, 3], loses_one, command="t", parameters={}, shard_size=4)


def test_parallel_workers_give_the_same_bytes(tmp_path: Path):
    serial = run_sharded(tmp_path / "s", PSEUDO, list(range(1, 20)), process_units, command="t", parameters={}, shard_size=5)
    parallel = run_sharded(
        tmp_path / "p", PSEUDO, list(range(1, 20)), process_units, command="t", parameters={}, shard_size=5, workers=2
    )
    assert serial.shards == parallel.shards


def test_manifest_round_trips(tmp_path: Path):
    manifest = run_sharded(tmp_path, PSEUDO, [1, 5], process_units, command="t", parameters={"p": [1, 2]}, shard_size=4)
    loaded = Manifest.load(tmp_path / "_manifest.json")
    assert loaded == manifest
    data = json.loads((tmp_path / "_manifest.json").read_text())
    assert data["inputs_rejected"] == 1 and data["versions"]["pyarrow"] == pa.__version__
