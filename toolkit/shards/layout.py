"""Names of the files an output directory holds beside its shards.

Sidecar files start with an underscore, the Parquet ecosystem's convention (Spark's `_SUCCESS`,
`_metadata`): pyarrow's dataset discovery, and so `pandas.read_parquet(dir)`, skips them, and
duckdb's `read_parquet('dir/*.parquet')` never sees them. Every module names them through here.
"""
from __future__ import annotations

MANIFEST_NAME = "_manifest.json"
LEGACY_MANIFEST_NAME = "manifest.json"  # written before mertk 0.2; still read and validated
REPORT_NAME = "_report.html"
STATE_DIR = "_state"
