"""Opening an output directory for reading: the one check every reader of shards goes through.

Trainers, `export`, `evaluate` and the pipelines that read back their own shards call
`open_shards` before reading a row: the manifest must exist and be a mertk manifest of the expected
schema, every listed shard must be there with the manifest's content hash, and each shard's Arrow
schema must be the versioned schema's. A directory that `mertk validate` would reject for any of
these reasons is refused with one line naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mertk.errors import InputError
from mertk.shards.io import file_sha256
from mertk.shards.layout import LEGACY_MANIFEST_NAME, MANIFEST_NAME
from mertk.shards.manifest import Manifest
from mertk.shards.schema import SchemaError, load_schema


class ShardDatasetError(InputError):
    """An output directory that cannot be read as the shards it claims to hold."""


@dataclass(frozen=True)
class ShardDataset:
    """A checked output directory: its manifest and its shard files in manifest order."""

    directory: Path
    manifest_path: Path
    manifest: Manifest
    shard_paths: tuple[Path, ...]

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every shard as one table (manifest order)."""
        if not self.shard_paths:
            raise ShardDatasetError(f"{self.manifest_path}: the manifest lists no shards")
        return pa.concat_tables([pq.read_table(path, columns=columns) for path in self.shard_paths])


def _schema_name_version(key: str, where: Path) -> tuple[str, int]:
    name, _, version = key.rpartition(".v")
    if not name or not version.isdigit():
        raise ShardDatasetError(f"{where}: schema {key!r} is not of the form name.vN")
    return name, int(version)


def open_shards(
    directory: Path | str,
    kind: str | None = None,
    versions: Sequence[int] | None = None,
    *,
    verify_hashes: bool = True,
    produced_by: str = "a mertk pipeline",
) -> ShardDataset:
    """Check an output directory and return its manifest and shard paths.

    `kind` is the schema name the caller reads (e.g. "unimer_sample"); `versions` the versions it
    understands (None: any). `produced_by` names the command that writes such a directory, for the
    error line. With `verify_hashes`, every shard's SHA-256 is compared with the manifest's.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardDatasetError(f"{directory}: not a folder; expected the output directory of {produced_by}")
    manifest_path = Manifest.find(directory)
    manifest = Manifest.load(manifest_path)
    name, version = _schema_name_version(manifest.schema, manifest_path)
    if kind is not None and name != kind:
        raise ShardDatasetError(f"{manifest_path}: holds {manifest.schema} shards; expected {kind} (the output of {produced_by})")
    if versions is not None and version not in versions:
        known = ", ".join(f"{name}.v{v}" for v in versions)
        raise ShardDatasetError(f"{manifest_path}: schema {manifest.schema} is not one this version of mertk reads ({known})")
    try:
        expected = load_schema(name, version).arrow_schema()
    except SchemaError as error:
        raise ShardDatasetError(f"{manifest_path}: {error}") from None
    paths = []
    for shard in manifest.shards:
        path = directory / shard["path"]
        if not path.is_file():
            raise ShardDatasetError(f"{path}: listed in {manifest_path.name} but missing")
        if verify_hashes and file_sha256(path) != shard["sha256"]:
            raise ShardDatasetError(f"{path}: content differs from {manifest_path.name} (damaged or edited; rebuild it, or run `mertk validate {directory}`)")
        try:
            actual = pq.read_schema(path)
        except (OSError, pa.ArrowException) as error:
            raise ShardDatasetError(f"{path}: not a readable Parquet file ({error})") from None
        if not actual.remove_metadata().equals(expected.remove_metadata()):
            raise ShardDatasetError(f"{path}: columns or types are not those of {manifest.schema} (run `mertk validate {directory}`)")
        paths.append(path)
    return ShardDataset(directory, manifest_path, manifest, tuple(paths))


def read_shards(directory: Path | str, columns: list[str] | None = None, kind: str | None = None) -> pa.Table:
    """Read every shard listed in a directory's manifest (in manifest order) as one table, after the check."""
    return open_shards(directory, kind).read(columns)


def has_manifest(directory: Path | str) -> bool:
    """Whether a folder is a mertk output directory (it carries a manifest, either name)."""
    directory = Path(directory)
    return any((directory / name).is_file() for name in (MANIFEST_NAME, LEGACY_MANIFEST_NAME))
