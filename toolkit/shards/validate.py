"""Check shards against the schema named in their metadata, and manifests against their shards.

Every problem is a `Finding` naming the file and, where it applies, the row and column.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mertk.shards.io import file_sha256, shard_schema_key
from mertk.shards.layout import LEGACY_MANIFEST_NAME, MANIFEST_NAME, STATE_DIR
from mertk.shards.manifest import Manifest, ManifestError
from mertk.shards.schema import Schema, SchemaError, load_schema

MAX_ROWS_REPORTED = 3  # per rule: enough to locate the problem, not a flood


@dataclass(frozen=True)
class Finding:
    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column is not None:
            where += f" column {self.column}"
        return f"{where}: {self.message}"


@dataclass
class FileReport:
    file: str
    kind: str  # "shard" or "manifest"
    schema: str | None
    rows: int | None
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def validate_paths(paths: Iterable[Path]) -> list[FileReport]:
    """Validate files and directories (recursively: every shard and manifest under them)."""
    reports: list[FileReport] = []
    for path in paths:
        if path.is_dir():
            reports.extend(validate_directory(path))
        elif path.name in (MANIFEST_NAME, LEGACY_MANIFEST_NAME):
            reports.append(validate_manifest(path))
        else:
            reports.append(validate_shard(path))
    return reports


def validate_directory(directory: Path) -> list[FileReport]:
    reports = []
    shards = sorted(p for p in directory.rglob("*.parquet") if STATE_DIR not in p.relative_to(directory).parts)
    for shard in shards:
        reports.append(validate_shard(shard))
    for manifest in sorted([*directory.rglob(MANIFEST_NAME), *directory.rglob(LEGACY_MANIFEST_NAME)]):
        reports.append(validate_manifest(manifest))
    if not shards and not reports:
        reports.append(FileReport(str(directory), "directory", None, None, [Finding(str(directory), "no shards or manifest found")]))
    return reports


def validate_shard(path: Path) -> FileReport:
    name = str(path)
    report = FileReport(name, "shard", None, None, [])
    try:
        key = shard_schema_key(path)
    except (OSError, pa.ArrowException) as error:
        report.findings.append(Finding(name, f"not a readable Parquet file (truncated or corrupt?): {error}"))
        return report
    except ValueError as error:  # a version that is not a number
        report.findings.append(Finding(name, f"unusable schema version in the file's metadata: {error}"))
        return report
    if key is None:
        report.findings.append(Finding(name, "no mertk schema in the file's key-value metadata (mertk.schema / mertk.schema_version)"))
        return report
    try:
        schema = load_schema(*key)
    except SchemaError as error:
        report.findings.append(Finding(name, str(error)))
        return report
    report.schema = schema.key
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        report.findings.append(Finding(name, f"cannot read the data pages (truncated or corrupt?): {error}"))
        return report
    report.rows = table.num_rows
    report.findings.extend(check_table(table, schema, name))
    return report


def check_table(table: pa.Table, schema: Schema, name: str) -> list[Finding]:
    """Columns, types, nulls and value rules of `table` against `schema`."""
    findings: list[Finding] = []
    for column in schema.columns:
        if column.name not in table.column_names:
            findings.append(Finding(name, f"missing column (expected {column.type_text})", column=column.name))
            continue
        data = table.column(column.name)
        if not data.type.equals(column.arrow_type):
            findings.append(
                Finding(name, f"type is {data.type}, schema {schema.key} expects {column.type_text}", column=column.name)
            )
            continue
        array = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
        rows = pa.array(np.arange(len(array), dtype=np.int64))
        rules = dict(column.rules, nullable=column.nullable)
        findings.extend(_check_values(array, rows, rules, name, column.name))
    extra = [c for c in table.column_names if c not in {col.name for col in schema.columns}]
    for column_name in extra:
        findings.append(Finding(name, f"column not in schema {schema.key}", column=column_name))
    for rule in schema.row_rules:
        findings.extend(_check_row_rule(table, rule, name))
    return findings


def _report_rows(bad_mask: pa.Array, rows: pa.Array, message: str, name: str, column: str) -> list[Finding]:
    bad_mask = pc.fill_null(bad_mask, False)
    bad_rows = pc.filter(rows, bad_mask).to_pylist()
    if not bad_rows:
        return []
    unique_rows = sorted(set(bad_rows))
    findings = [Finding(name, message, row=r, column=column) for r in unique_rows[:MAX_ROWS_REPORTED]]
    if len(unique_rows) > MAX_ROWS_REPORTED:
        findings.append(Finding(name, f"{message} (and {len(unique_rows) - MAX_ROWS_REPORTED} more rows)", column=column))
    return findings


def _check_values(array: pa.Array, rows: pa.Array, rules: dict[str, Any], name: str, path: str) -> list[Finding]:
    findings: list[Finding] = []
    if not rules.get("nullable", True) and array.null_count:
        findings += _report_rows(pc.is_null(array), rows, "null where the schema allows none", name, path)
    if "min" in rules:
        findings += _report_rows(pc.less(array, rules["min"]), rows, f"value below the minimum {rules['min']}", name, path)
    if "max" in rules:
        findings += _report_rows(pc.greater(array, rules["max"]), rows, f"value above the maximum {rules['max']}", name, path)
    if pa.types.is_floating(array.type):
        findings += _report_rows(pc.invert(pc.is_finite(array)), rows, "value is not finite", name, path)
    if "allowed" in rules:
        allowed = pa.array(rules["allowed"], type=array.type)
        outside = pc.invert(pc.is_in(array, value_set=allowed))
        shown = ", ".join(map(str, rules["allowed"][:8])) + (" ..." if len(rules["allowed"]) > 8 else "")
        findings += _report_rows(pc.and_(outside, pc.is_valid(array)), rows, f"value not allowed (allowed: {shown})", name, path)
    if "pattern" in rules:
        anchored = f"^(?:{rules['pattern']})$"
        mismatch = pc.invert(pc.match_substring_regex(array, anchored))
        findings += _report_rows(mismatch, rows, f"value does not match /{rules['pattern']}/", name, path)
    if pa.types.is_list(array.type):
        lengths = pc.list_value_length(array)
        if "length" in rules:
            findings += _report_rows(pc.not_equal(lengths, rules["length"]), rows, f"list length is not {rules['length']}", name, path)
        if "min_length" in rules:
            findings += _report_rows(pc.less(lengths, rules["min_length"]), rows, f"list shorter than {rules['min_length']}", name, path)
        if "max_length" in rules:
            findings += _report_rows(pc.greater(lengths, rules["max_length"]), rows, f"list longer than {rules['max_length']}", name, path)
        if "items" in rules:
            flat = pc.list_flatten(array)
            item_rows = pc.take(rows, pc.list_parent_indices(array))
            findings += _check_values(flat, item_rows, rules["items"], name, f"{path}[]")
    if pa.types.is_struct(array.type):
        for field_name, field_rules in rules.get("fields", {}).items():
            child = pc.struct_field(array, field_name)
            findings += _check_values(child, rows, field_rules, name, f"{path}.{field_name}")
    return findings


def _check_row_rule(table: pa.Table, rule: dict[str, Any], name: str) -> list[Finding]:
    if rule.get("kind") != "ordered":
        return [Finding(name, f"unknown row rule {rule.get('kind')!r} in schema")]
    columns = [c for c in rule["columns"] if c in table.column_names]
    compare = pc.greater_equal if rule.get("strict") else pc.greater
    relation = "<" if rule.get("strict") else "<="
    findings: list[Finding] = []
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    for left, right in zip(columns, columns[1:]):
        bad = compare(table.column(left).combine_chunks(), table.column(right).combine_chunks())
        findings += _report_rows(bad, rows, f"{left} {relation} {right} does not hold", name, f"{left},{right}")
    return findings


def validate_manifest(path: Path) -> FileReport:
    """Counts, hashes, and missing or extra shard files of one manifest."""
    name = str(path)
    report = FileReport(name, "manifest", None, None, [])
    try:
        manifest = Manifest.load(path)
    except ManifestError as error:
        report.findings.append(Finding(name, str(error)))
        return report
    report.schema = manifest.schema
    report.rows = manifest.rows_written
    directory = path.parent
    findings = report.findings
    if manifest.inputs_seen != manifest.inputs_written + manifest.inputs_rejected:
        findings.append(
            Finding(name, f"inputs_seen {manifest.inputs_seen} != inputs_written {manifest.inputs_written} + "
                    f"rejected {manifest.inputs_rejected}")
        )
    listed_rows = sum(int(s["rows"]) for s in manifest.shards)
    if listed_rows != manifest.rows_written:
        findings.append(Finding(name, f"rows_written {manifest.rows_written} != sum of shard rows {listed_rows}"))
    for shard in manifest.shards:
        shard_path = directory / shard["path"]
        if not shard_path.is_file():
            findings.append(Finding(name, f"listed shard {shard['path']} is missing"))
            continue
        if file_sha256(shard_path) != shard["sha256"]:
            findings.append(Finding(name, f"shard {shard['path']}: content hash differs from the manifest"))
        try:
            actual_rows = pq.read_metadata(shard_path).num_rows
        except (OSError, pa.ArrowException):
            continue  # the shard's own report says it is unreadable
        if actual_rows != int(shard["rows"]):
            findings.append(Finding(name, f"shard {shard['path']}: manifest says {shard['rows']} rows, file has {actual_rows}"))
    listed = {str(Path(s["path"])) for s in manifest.shards}
    # Shards sitting directly beside the manifest must be listed; nested outputs carry their own manifest.
    for candidate in sorted(directory.glob("*.parquet")):
        if candidate.name not in listed:
            findings.append(Finding(name, f"shard {candidate.name} is in the directory but not in the manifest"))
    return report
