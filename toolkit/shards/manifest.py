"""The manifest every output directory carries (written by mertk.execution.sharded and the trainers).

Inputs seen = inputs written + inputs rejected, always: a pipeline records every input it was
given, either as rows in a shard or as a rejection with its reason.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from mertk.errors import InputError
from mertk.shards.io import file_sha256, write_bytes_atomic
from mertk.shards.layout import LEGACY_MANIFEST_NAME, MANIFEST_NAME
from mertk.shards.schema import Schema

MANIFEST_FORMAT = "mertk.manifest.v1"


class ManifestError(InputError):
    """A manifest that is missing, unreadable or not a mertk manifest."""


@dataclass(frozen=True)
class Rejection:
    """One input that produced no rows, and why (the reason names file and row where it can)."""

    input: str
    reason: str
    file: str | None = None


@dataclass
class ShardResult:
    """What one shard's worth of inputs produced."""

    table: pa.Table
    written_inputs: list[str]
    rejections: list[Rejection] = field(default_factory=list)


@dataclass
class Manifest:
    command: str
    schema: str
    parameters: dict[str, Any]
    versions: dict[str, str]
    inputs_seen: int
    inputs_written: int
    rows_written: int
    rejections: list[dict[str, Any]]
    shards: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    @property
    def inputs_rejected(self) -> int:
        return len(self.rejections)

    def to_json(self) -> str:
        data = asdict(self)
        data["inputs_rejected"] = self.inputs_rejected
        return json.dumps(data, indent=2, sort_keys=True, default=json_default) + "\n"

    def write(self, directory: Path | str) -> Path:
        path = Path(directory) / MANIFEST_NAME
        write_bytes_atomic(path, self.to_json().encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: Path | str) -> "Manifest":
        """Read a manifest file; anything but a mertk manifest is a one-line ManifestError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path}: no such manifest") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"{path}: not a readable JSON manifest ({error})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{path}: not a mertk manifest (expected \"format\": \"{MANIFEST_FORMAT}\")")
        data.pop("inputs_rejected", None)
        try:
            return cls(**data)
        except TypeError as error:
            raise ManifestError(f"{path}: manifest fields are not the expected ones ({error})") from None

    @classmethod
    def find(cls, directory: Path | str) -> Path:
        """The manifest file of an output directory (the legacy name is still accepted)."""
        directory = Path(directory)
        for name in (MANIFEST_NAME, LEGACY_MANIFEST_NAME):
            if (directory / name).is_file():
                return directory / name
        raise ManifestError(f"{directory}: no {MANIFEST_NAME}; expected an output directory written by mertk")


def json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions that determine the output bytes (recorded, so a difference can be explained)."""
    versions = {"python": platform.python_version()}
    for name in ("mertk", "numpy", "pyarrow", "pandas", *extra):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def shard_name(schema: Schema, index: int) -> str:
    return f"{schema.name}-{index:05d}.parquet"


def write_single_output_manifest(
    out_dir: Path | str,
    schema: Schema,
    shard_path: Path | str,
    *,
    command: str,
    parameters: dict[str, Any],
    inputs_seen: int,
    inputs_written: int,
    rows_written: int,
    rejections: Sequence[Rejection] = (),
    summary: dict[str, Any] | None = None,
    extra_versions: Sequence[str] = (),
) -> Manifest:
    """Manifest for a directory holding one shard written outside run_sharded (e.g. predictions)."""
    out_dir = Path(out_dir)
    shard_path = Path(shard_path)
    manifest = Manifest(
        command=command,
        schema=schema.key,
        parameters=parameters,
        versions=package_versions(extra_versions),
        inputs_seen=inputs_seen,
        inputs_written=inputs_written,
        rows_written=rows_written,
        rejections=[asdict(r) for r in rejections],
        shards=[{"path": str(shard_path.relative_to(out_dir)), "rows": rows_written, "sha256": file_sha256(shard_path)}],
        summary=summary or {},
    )
    manifest.write(out_dir)
    return manifest


def command_line() -> str:
    """The command as the user typed it, for the manifest."""
    return " ".join(["mertk", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("mertk") else " ".join(sys.argv)
