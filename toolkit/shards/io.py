"""Parquet shard writing and reading shared by every pipeline.

A shard is written to a temporary file beside its final name and renamed into place only once
complete, so an interrupted run never leaves a partial file under a shard's name. The same table
always yields the same bytes (no timestamps; the writer's version is fixed by the install).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from mertk.shards.schema import SCHEMA_KEY, VERSION_KEY, Schema

DEFAULT_ROW_GROUP_SIZE = 4096
COMPRESSION = "zstd"


class ShardTypeError(ValueError):
    """A table handed to the writer does not have the schema's columns and types."""


def conform_table(table: pa.Table, schema: Schema) -> pa.Table:
    """Return `table` with exactly the schema's columns, order and types (safe casts only)."""
    target = schema.arrow_schema()
    missing = [name for name in target.names if name not in table.column_names]
    extra = [name for name in table.column_names if name not in target.names]
    if missing or extra:
        raise ShardTypeError(f"{schema.key}: table columns differ (missing {missing}, unexpected {extra})")
    table = table.select(target.names)
    try:
        return table.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ShardTypeError(f"{schema.key}: cannot convert table to the schema's types: {error}") from None


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Parquet leaf paths worth dictionary encoding: every leaf except floating-point ones.

    Float columns (scores, embeddings) hardly repeat: a dictionary there only costs time (about
    half of a label shard's write) and bytes before Parquet falls back to plain encoding.
    """

    def leaves(path: str, kind: pa.DataType):
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            yield from leaves(f"{path}.list.element", kind.value_type)
        elif pa.types.is_struct(kind):
            for child in kind:
                yield from leaves(f"{path}.{child.name}", child.type)
        elif not pa.types.is_floating(kind):
            yield path

    return [leaf for field in schema for leaf in leaves(field.name, field.type)]


def write_shard(
    table: pa.Table,
    path: Path | str,
    schema: Schema,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    durable: bool = True,
) -> str:
    """Write `table` as a zstd Parquet shard of `schema` at `path`, atomically; return its sha256.

    durable=False skips the fsync before the rename: the file is still never seen half-written
    by another process, but a power loss may lose it; the caller must then `sync_files` it
    before recording anything that depends on it surviving (e.g. the run's manifest).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = conform_table(table, schema)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(
            table,
            temporary,
            compression=COMPRESSION,
            row_group_size=row_group_size,
            use_dictionary=dictionary_columns(table.schema),
            write_statistics=True,
        )
        if durable:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return file_sha256(path)


def write_bytes_atomic(path: Path | str, data: bytes | memoryview, durable: bool = True) -> None:
    """Write any small file (manifest, state, report) with the same temporary-then-rename rule."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def sync_files(paths: Iterable[Path | str]) -> None:
    """fsync each file, then each folder holding one (so that their renames are durable too)."""
    folders: dict[Path, None] = {}
    for path in paths:
        path = Path(path)
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        folders[path.parent] = None
    for folder in folders:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_schema_key(path: Path | str) -> tuple[str, int] | None:
    """The (schema name, version) recorded in a shard's key-value metadata, or None when absent."""
    metadata = pq.read_schema(path).metadata or {}
    if SCHEMA_KEY not in metadata or VERSION_KEY not in metadata:
        return None
    return metadata[SCHEMA_KEY].decode(), int(metadata[VERSION_KEY].decode())
