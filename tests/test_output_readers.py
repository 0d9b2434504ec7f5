"""The README's lines for opening outputs with pandas, pyarrow and duckdb run here, as written,
on output folders that carry their manifest, report and resume state beside the shards."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from mertk.execution.sharded import run_sharded
from mertk.shards.dataset import read_shards
from mertk.shards.layout import MANIFEST_NAME, REPORT_NAME, STATE_DIR
from mertk.shards.manifest import ShardResult
from mertk.shards.schema import load_schema
from mertk.training.synthetic import write_synthetic_unimer

README = Path(__file__).resolve().parents[1] / "README.md"
PSEUDO = load_schema("avvp_pseudo_label", 1)


def readme_reader_lines() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```python\n(import duckdb\n.*?)```", text, re.S)
    assert block, "README: the python block that opens outputs with duckdb, pandas and pyarrow is gone"
    return block.group(1)


def _pseudo_rows(units: list[int]) -> ShardResult:
    rows = [
        {"filename": f"vid{u:08d}_0_10", "video_id": f"vid{u:08d}", "split": "train" if u % 3 else "val",
         "modality": modality, "segment": segment, "labels": ["Speech"] if segment < 3 else [], "scores": [0.5] * 25}
        for u in units for modality in ("audio", "visual") for segment in range(10)
    ]
    return ShardResult(PSEUDO.table_from_rows(rows), [f"vid{u:08d}_0_10" for u in units])


def test_readme_reader_lines_open_output_folders_as_they_are(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_synthetic_unimer(out / "unimer", subjects=3, per_subject=4, shard_size=5)
    run_sharded(out / "avvp_pseudo", PSEUDO, list(range(9)), _pseudo_rows, command="test", parameters={}, shard_size=4, progress=False)
    for folder in (out / "unimer", out / "avvp_pseudo"):
        (folder / REPORT_NAME).write_text("<html>a report sits beside the shards</html>")
        assert (folder / MANIFEST_NAME).is_file() and (folder / STATE_DIR).is_dir()

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_reader_lines(), "README.md", "exec"), namespace)

    samples, pseudo, counts = namespace["samples"], namespace["pseudo"], namespace["counts"]
    assert len(samples) == 12 == read_shards(out / "unimer").num_rows
    assert sorted(samples["sample_id"]) == sorted(read_shards(out / "unimer").column("sample_id").to_pylist())
    assert pseudo.num_rows == 9 * 2 * 10
    assert dict(counts) == {"train": 6 * 20, "val": 3 * 20}
    # the shards themselves are what every reader sees
    assert sum(pq.read_metadata(p).num_rows for p in (out / "avvp_pseudo").glob("*.parquet")) == pseudo.num_rows
