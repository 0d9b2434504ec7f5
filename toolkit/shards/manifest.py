"""The manifest every output directory carries, and the resumable sharded runner that writes it.

Inputs seen = inputs written + inputs rejected, always: a pipeline records every input it was
given, either as rows in a shard or as a rejection with its reason.
"""
from __future__ import annotations

import json
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import pyarrow as pa

from mertk.shards.io import file_sha256, sync_files, write_bytes_atomic, write_shard
from mertk.shards.schema import Schema

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "mertk.manifest.v1"
STATE_DIR = "_state"

Unit = TypeVar("Unit")


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
        return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"

    def write(self, directory: Path | str) -> Path:
        path = Path(directory) / MANIFEST_NAME
        write_bytes_atomic(path, self.to_json().encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: Path | str) -> "Manifest":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data.pop("inputs_rejected", None)
        return cls(**data)


def _json_default(value: Any) -> Any:
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


class ResumeMismatchError(RuntimeError):
    """The output directory holds a run made with other parameters."""


def _fingerprint(command_parameters: dict[str, Any]) -> str:
    return json.dumps(command_parameters, sort_keys=True, default=_json_default)


def run_sharded(
    out_dir: Path | str,
    schema: Schema,
    units: Sequence[Unit],
    process_shard: Callable[[list[Unit]], ShardResult],
    *,
    command: str,
    parameters: dict[str, Any],
    shard_size: int,
    pre_rejections: Sequence[Rejection] = (),
    workers: int = 1,
    description: str = "shards",
    extra_versions: Sequence[str] = (),
    summary: dict[str, Any] | None = None,
    progress: bool = True,
) -> Manifest:
    """Process `units` in fixed shards of `shard_size`, skipping shards a previous run completed.

    `process_shard` must be a picklable top-level function (or functools.partial) when
    workers > 1. Shard i always holds units[i*shard_size:(i+1)*shard_size], so the shard layout
    and bytes do not depend on the number of workers or on interruptions. `pre_rejections` are
    inputs rejected before processing (e.g. unreadable sheet rows); they count as inputs seen.
    """
    from mertk.console import progress_bar

    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint({"schema": schema.key, "parameters": parameters, "shard_size": shard_size})
    chunks = [list(units[start : start + shard_size]) for start in range(0, len(units), shard_size)]

    states: dict[int, dict[str, Any]] = {}
    pending: list[int] = []
    for index in range(len(chunks)):
        state = _load_complete_state(out_dir, state_dir, schema, index)
        if state is not None and state["fingerprint"] != fingerprint:
            raise ResumeMismatchError(
                f"{out_dir} holds shards of a run with other parameters; choose another --out "
                f"or delete {out_dir}"
            )
        if state is None:
            pending.append(index)
        else:
            states[index] = state

    # Each shard is encoded and written by a writer thread while the next one is processed (at
    # most one waits: memory stays bounded), in shard order. Shards and their state files are
    # written without a per-file fsync; a second thread makes each pair durable, and all of them
    # are durable before the manifest is written. A pair lost to a crash before its sync is simply
    # redone on resume: a missing or mismatching shard or state file fails _load_complete_state's
    # hash check.
    from concurrent.futures import Future, ThreadPoolExecutor

    writer, syncer = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    syncs: list[Any] = []
    writing: list[Future] = []  # the write in flight, if any

    def write(index: int, result: ShardResult) -> None:
        name = shard_name(schema, index)
        digest = write_shard(result.table, out_dir / name, schema, durable=False)
        state = {
            "fingerprint": fingerprint,
            "path": name,
            "rows": result.table.num_rows,
            "sha256": digest,
            "inputs": len(chunks[index]),
            "written_inputs": list(result.written_inputs),
            "rejections": [asdict(r) for r in result.rejections],
        }
        write_bytes_atomic(state_dir / f"{name}.json", json.dumps(state, sort_keys=True).encode(), durable=False)
        syncs.append(syncer.submit(sync_files, [out_dir / name, state_dir / f"{name}.json"]))
        states[index] = state

    def finish(index: int, result: ShardResult) -> None:
        if len(result.written_inputs) + len(result.rejections) != len(chunks[index]):
            raise RuntimeError(
                f"{shard_name(schema, index)}: {len(chunks[index])} inputs but {len(result.written_inputs)} written and "
                f"{len(result.rejections)} rejected: every input must be written or rejected"
            )
        if writing:
            writing.pop().result()  # the previous shard is written (its error, if any, raised here)
        writing.append(writer.submit(write, index, result))

    total_units = len(units)
    done_units = sum(len(chunks[i]) for i in states)
    resumed = sorted(states)  # completed by an earlier run, which may have ended before syncing them
    try:
        with progress_bar(total_units, description, enabled=progress) as advance:
            advance(done_units)
            if workers > 1 and len(pending) > 1:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    futures = {index: pool.submit(process_shard, chunks[index]) for index in pending}
                    for index in pending:  # in order: the state files appear in shard order
                        finish(index, futures[index].result())
                        advance(len(chunks[index]))
            else:
                for index in pending:
                    finish(index, process_shard(chunks[index]))
                    advance(len(chunks[index]))
            if writing:
                writing.pop().result()
        syncs.append(syncer.submit(sync_files, [
            path for index in resumed
            for path in (out_dir / states[index]["path"], state_dir / f"{states[index]['path']}.json")
        ]))
        for sync in syncs:
            sync.result()  # every shard and state file durable before the manifest names them
    finally:
        writer.shutdown(wait=True)
        syncer.shutdown(wait=True)

    ordered = [states[i] for i in range(len(chunks))]
    rejections = [asdict(r) for r in pre_rejections] + [r for s in ordered for r in s["rejections"]]
    manifest = Manifest(
        command=command,
        schema=schema.key,
        parameters=parameters,
        versions=package_versions(extra_versions),
        inputs_seen=len(pre_rejections) + total_units,
        inputs_written=sum(len(s["written_inputs"]) for s in ordered),
        rows_written=sum(s["rows"] for s in ordered),
        rejections=rejections,
        shards=[{"path": s["path"], "rows": s["rows"], "sha256": s["sha256"]} for s in ordered],
        summary=summary or {},
    )
    manifest.write(out_dir)
    return manifest


def _load_complete_state(out_dir: Path, state_dir: Path, schema: Schema, index: int) -> dict[str, Any] | None:
    """A shard counts as complete when its state file exists and the shard's hash matches it."""
    name = shard_name(schema, index)
    state_path = state_dir / f"{name}.json"
    shard_path = out_dir / name
    if not state_path.is_file() or not shard_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if state.get("sha256") != file_sha256(shard_path):
        return None
    return state


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
