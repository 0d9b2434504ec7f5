"""`mertk validate`: exit 0 on good output, 1 naming each kind of problem, 2 on unusable arguments."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import invoke_mertk
from mertk.cli.app import app
from mertk.shards.io import write_shard
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import Manifest, ShardResult
from mertk.shards.schema import SCHEMA_KEY, VERSION_KEY, load_schema

PSEUDO = load_schema("avvp_pseudo_label", 1)
PREDICTION = load_schema("avvp_prediction", 1)
runner = CliRunner()


def good_rows(n: int = 6) -> list[dict]:
    return [
        {
            "filename": "BjCEufrlXm4_20_30",
            "video_id": "BjCEufrlXm4",
            "split": "train",
            "modality": "audio" if i % 2 == 0 else "visual",
            "segment": i % 10,
            "labels": ["Speech"] if i % 3 else [],
            "scores": [i / 10] * 25,
        }
        for i in range(n)
    ]


def one_shard(units: list[int]) -> ShardResult:
    return ShardResult(PSEUDO.table_from_rows(good_rows(len(units))), [str(u) for u in units], [])


@pytest.fixture()
def good_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    run_sharded(out, PSEUDO, list(range(10)), one_shard, command="test", parameters={}, shard_size=5, progress=False)
    return out


def run_validate(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["validate", "--json", *args])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else {})


def findings(report: dict) -> list[str]:
    return [f"{f['file']}|{f['row']}|{f['column']}|{f['message']}" for file in report["files"] for f in file["findings"]]


def write_raw(path: Path, table: pa.Table, schema_key: tuple[str, int] | None = ("avvp_pseudo_label", 1)) -> Path:
    metadata = None if schema_key is None else {SCHEMA_KEY: schema_key[0].encode(), VERSION_KEY: str(schema_key[1]).encode()}
    table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return path


def test_good_directory_passes(good_dir: Path):
    code, report = run_validate(str(good_dir))
    assert code == 0, findings(report)
    assert report["ok"] is True
    assert [f["kind"] for f in report["files"]] == ["shard", "shard", "manifest"]


def test_table_output_names_the_problem(tmp_path: Path):
    table = PSEUDO.table_from_rows(good_rows()).drop_columns(["labels"])
    path = write_raw(tmp_path / "x.parquet", table)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "column labels: missing column" in result.stdout


def test_missing_column(tmp_path: Path):
    path = write_raw(tmp_path / "x.parquet", PSEUDO.table_from_rows(good_rows()).drop_columns(["segment"]))
    code, report = run_validate(str(path))
    assert code == 1
    assert any("|segment|missing column" in f for f in findings(report))


def test_wrong_type(tmp_path: Path):
    table = PSEUDO.table_from_rows(good_rows())
    table = table.set_column(table.schema.get_field_index("segment"), "segment", table.column("segment").cast(pa.int64()))
    code, report = run_validate(str(write_raw(tmp_path / "x.parquet", table)))
    assert code == 1
    assert any("|segment|type is int64" in f and "expects int8" in f for f in findings(report))


def test_null_where_none_is_allowed_names_the_row(tmp_path: Path):
    rows = good_rows()
    rows[4]["modality"] = None
    table = pa.Table.from_pylist(rows, schema=PSEUDO.arrow_schema().with_metadata(None).set(3, pa.field("modality", pa.string())))
    code, report = run_validate(str(write_raw(tmp_path / "x.parquet", table)))
    assert code == 1
    assert any("|4|modality|null where the schema allows none" in f for f in findings(report))


@pytest.mark.parametrize(
    "column,value,message",
    [
        ("segment", 10, "value above the maximum 9"),
        ("modality", "speech", "value not allowed"),
        ("filename", "short", "does not match"),
        ("labels", ["Speech", "Kazoo"], "value not allowed"),
        ("scores", [0.5] * 24, "list length is not 25"),
        ("scores", [1.5] * 25, "value above the maximum 1"),
        ("scores", [float("nan")] * 25, "not finite"),
    ],
)
def test_value_outside_its_rule(tmp_path: Path, column: str, value, message: str):
    rows = good_rows()
    rows[2][column] = value
    code, report = run_validate(str(write_raw(tmp_path / "x.parquet", PSEUDO.table_from_rows(rows))))
    assert code == 1
    hits = [f for f in findings(report) if f"|2|{column}" in f and message in f]
    assert hits, findings(report)


def test_row_rule_across_columns(tmp_path: Path):
    rows = [{"filename": "BjCEufrlXm4_20_30", "modality": "audio", "event_labels": "Dog", "onset": 5, "offset": 5}]
    code, report = run_validate(str(write_raw(tmp_path / "p.parquet", PREDICTION.table_from_rows(rows), ("avvp_prediction", 1))))
    assert code == 1
    assert any("|0|onset,offset|onset < offset does not hold" in f for f in findings(report))


def test_manifest_whose_counts_disagree(good_dir: Path):
    manifest = Manifest.load(good_dir / "_manifest.json")
    manifest.rows_written += 1
    manifest.inputs_seen += 2
    manifest.write(good_dir)
    code, report = run_validate(str(good_dir))
    assert code == 1
    messages = findings(report)
    assert any("rows_written 11 != sum of shard rows 10" in f for f in messages)
    assert any("inputs_seen 12 != inputs_written 10 + rejected 0" in f for f in messages)


def test_manifest_whose_hash_disagrees(good_dir: Path):
    shard = sorted(good_dir.glob("*.parquet"))[0]
    write_shard(PSEUDO.table_from_rows(good_rows(5)[::-1]), shard, PSEUDO)  # valid shard, other content
    code, report = run_validate(str(good_dir / "_manifest.json"))
    assert code == 1
    assert any(f"shard {shard.name}: content hash differs" in f for f in findings(report))


def test_missing_and_extra_shard_files(good_dir: Path):
    shards = sorted(good_dir.glob("*.parquet"))
    shards[0].unlink()
    shutil.copy(shards[1], good_dir / "stray.parquet")
    code, report = run_validate(str(good_dir))
    assert code == 1
    messages = findings(report)
    assert any(f"listed shard {shards[0].name} is missing" in f for f in messages)
    assert any("shard stray.parquet is in the directory but not in the manifest" in f for f in messages)


def test_truncated_file(good_dir: Path):
    shard = sorted(good_dir.glob("*.parquet"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    code, report = run_validate(str(shard))
    assert code == 1
    assert any("not a readable Parquet file" in f for f in findings(report))


def test_file_without_schema_metadata_and_unknown_version(tmp_path: Path):
    plain = write_raw(tmp_path / "plain.parquet", PSEUDO.table_from_rows(good_rows()), schema_key=None)
    future = write_raw(tmp_path / "future.parquet", PSEUDO.table_from_rows(good_rows()), ("avvp_pseudo_label", 7))
    code, report = run_validate(str(plain), str(future))
    assert code == 1
    messages = findings(report)
    assert any("plain.parquet" in f and "no mertk schema" in f for f in messages)
    assert any("future.parquet" in f and "unknown schema avvp_pseudo_label.v7" in f for f in messages)


def test_path_that_does_not_exist_exits_2(tmp_path: Path):
    result = invoke_mertk("validate", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_every_real_llp_filename_fits_the_filename_pattern(tmp_path: Path):
    """The real corpus has a few filenames with decimal times (e.g. AP0061o0Nvk_101.8_111.8)."""
    from mertk.sample_data.llp import annotation_source

    with annotation_source(None) as real:  # the real annotation files, as the package ships them
        names = [line.split("\t")[0] for split in ("train", "val_pd", "test_pd") for line in (real / f"AVVP_{split}.csv").read_text().splitlines()[1:]]
    assert len(names) == 11_849
    assert any("." in name for name in names)
    rows = [dict(good_rows(1)[0], filename=name, video_id=name[:11]) for name in names]
    code, report = run_validate(str(write_raw(tmp_path / "real.parquet", PSEUDO.table_from_rows(rows))))
    assert code == 0, findings(report)[:3]
