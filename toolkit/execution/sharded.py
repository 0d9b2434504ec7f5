"""The resumable sharded runner every pipeline writes its shards with.

Shard i always holds units[i*shard_size:(i+1)*shard_size], so the layout and the bytes do not
depend on the number of workers or on interruptions; a shard whose state file and hash agree is
never redone. The per-shard function is the method; this module only decides where it runs.
"""
from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

from mertk.console import console, progress_bar
from mertk.errors import ResumeMismatchError, RunError
from mertk.execution.pools import process_pool
from mertk.shards.io import file_sha256, sync_files, write_bytes_atomic, write_shard
from mertk.shards.layout import STATE_DIR
from mertk.shards.manifest import Manifest, Rejection, ShardResult, json_default, package_versions, shard_name
from mertk.shards.schema import Schema

Unit = TypeVar("Unit")
STATE_KEYS = {"fingerprint", "path", "rows", "sha256", "inputs", "written_inputs", "rejections"}  # what `write` records


def _fingerprint(command_parameters: dict[str, Any]) -> str:
    return json.dumps(command_parameters, sort_keys=True, default=json_default)


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
    executor: "ShardExecutor | None" = None,
) -> Manifest:
    """Process `units` in fixed shards of `shard_size`, skipping shards a previous run completed.

    `process_shard` must be a picklable top-level function (or functools.partial) when
    workers > 1. Shard i always holds units[i*shard_size:(i+1)*shard_size], so the shard layout
    and bytes do not depend on the number of workers or on interruptions. `pre_rejections` are
    inputs rejected before processing (e.g. unreadable sheet rows); they count as inputs seen.
    """
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
    writer, syncer = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    syncs: list[Any] = []
    writing: list[Future] = []  # the write in flight, if any

    def write(index: int, result: ShardResult) -> None:
        states[index] = write_shard_and_state(out_dir, schema, index, len(chunks[index]), result, fingerprint, durable=False)
        name = states[index]["path"]
        syncs.append(syncer.submit(sync_files, [out_dir / name, state_dir / f"{name}.json"]))

    def finish(index: int, result: ShardResult) -> None:
        check_every_input_accounted(schema, index, len(chunks[index]), result)
        if writing:
            writing.pop().result()  # the previous shard is written (its error, if any, raised here)
        writing.append(writer.submit(write, index, result))

    total_units = len(units)
    done_units = sum(len(chunks[i]) for i in states)
    resumed = sorted(states)  # completed by an earlier run, which may have ended before syncing them
    try:
        with progress_bar(total_units, description, enabled=progress) as advance:
            advance(done_units)
            if executor is not None and pending:
                # its workers write each shard and state file durably
                states.update(executor.run_shards(
                    out_dir, schema, {index: chunks[index] for index in pending}, process_shard, fingerprint, advance
                ))
            elif workers > 1 and len(pending) > 1:
                with process_pool(workers) as pool:
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


class ShardExecutor(Protocol):
    """Runs pending shards elsewhere (another machine, a cluster); see mertk.execution.ray_executor."""

    def run_shards(
        self,
        out_dir: Path,
        schema: Schema,
        chunks: dict[int, list[Any]],
        process_shard: Callable[[list[Any]], ShardResult],
        fingerprint: str,
        advance: Callable[[int], None],
    ) -> dict[int, dict[str, Any]]:
        """Process, write (shard and state file, durably) and return the state of every shard in `chunks`."""
        ...


def check_every_input_accounted(schema: Schema, index: int, inputs: int, result: ShardResult) -> None:
    if len(result.written_inputs) + len(result.rejections) != inputs:
        raise RunError(
            f"{shard_name(schema, index)}: {inputs} inputs but {len(result.written_inputs)} written and "
            f"{len(result.rejections)} rejected: every input must be written or rejected"
        )


def write_shard_and_state(
    out_dir: Path, schema: Schema, index: int, inputs: int, result: ShardResult, fingerprint: str, durable: bool
) -> dict[str, Any]:
    """Write shard `index` and then its state file (what makes it complete on resume); return the state."""
    name = shard_name(schema, index)
    digest = write_shard(result.table, out_dir / name, schema, durable=durable)
    state = {
        "fingerprint": fingerprint,
        "path": name,
        "rows": result.table.num_rows,
        "sha256": digest,
        "inputs": inputs,
        "written_inputs": list(result.written_inputs),
        "rejections": [asdict(r) for r in result.rejections],
    }
    write_bytes_atomic(out_dir / STATE_DIR / f"{name}.json", json.dumps(state, sort_keys=True).encode(), durable=durable)
    return state


def _load_complete_state(out_dir: Path, state_dir: Path, schema: Schema, index: int) -> dict[str, Any] | None:
    """A shard counts as complete when its state file exists and the shard's hash matches it."""
    name = shard_name(schema, index)
    state_path = state_dir / f"{name}.json"
    shard_path = out_dir / name
    if not state_path.is_file() or not shard_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or not STATE_KEYS <= state.keys():
        # a damaged state file: said in one line, and the shard is simply redone
        console.print(f"{state_path}: damaged state file (not the JSON object a run writes); its shard is redone", highlight=False, soft_wrap=True)
        return None
    if state.get("sha256") != file_sha256(shard_path):
        return None
    return state


def map_ordered(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    executor: Any = None,
    description: str = "tasks",
    progress: bool = True,
) -> list[Any]:
    """[function(item) for item in items], here or on `executor` (see run_sharded); results in order."""
    with progress_bar(len(items), description, enabled=progress) as advance:
        if executor is not None:
            return executor.map_ordered(function, items, advance)
        results = []
        for item in items:
            results.append(function(item))
            advance(1)
        return results
