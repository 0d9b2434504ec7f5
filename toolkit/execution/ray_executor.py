"""The Ray executor: the same per-shard function, run by Ray tasks on a cluster (or a local Ray).

`run_sharded(..., executor=RayExecutor(...))` hands it the pending shards. What a run shares (the
per-shard function with its fitted model: anchors, thresholds, the neighbour bank's labels and
the paths of its index files, which each worker memory-maps: mertk.migration.neighbours) is put
once in Ray's object store; each task takes it from there (numpy arrays without a copy, kept per
worker process for the next shard), labels one shard and writes that shard and its state file
itself, durably, on the output path (which every node must see). The driver only collects
the states and assembles the manifest, so the bytes are those of the local run for any number of
workers. A task whose worker is lost is run again by Ray (`retries` times); past that, or after an
interrupted driver, the same command resumes: shards with a matching state file are not redone.

`ray` is an optional dependency (the `cluster` extra) and is imported only here, only when a
RayExecutor is entered: no other command pays for its import.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mertk.errors import InputError, RunError

if TYPE_CHECKING:  # the shard machinery (and pyarrow) loads only when shards run: the CLI imports EXECUTORS
    from mertk.shards.manifest import ShardResult
    from mertk.shards.schema import Schema

EXECUTORS = ("local", "ray")

ADDRESS_VARIABLE = "RAY_ADDRESS"  # Ray's own convention: the cluster a driver joins by default
TASK_RETRIES = 3  # times a shard whose worker was lost is run again before the run stops
TASKS_PER_CPU = 2  # tasks in flight per cluster CPU: workers never wait, the driver holds few results


class RayUnavailableError(InputError):
    """`--executor ray` without Ray installed."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "--executor ray needs Ray: pip install 'mertk[cluster]' (or pip install ray) on every node"
        ) from None
    return ray


# A worker process keeps the last shared object it was given (the fitted model of the run), so
# that the shards after the first do not fetch and rebuild it.
_shared_cache: dict[str, Any] = {}


def _shared(reference: Any) -> Any:
    key = reference.hex()
    if key not in _shared_cache:
        _shared_cache.clear()
        _shared_cache[key] = _ray().get(reference)
    return _shared_cache[key]


def _process_and_write(shared: list, out_dir: str, schema: Schema, index: int, chunk: list, fingerprint: str) -> dict[str, Any]:
    """One task: label one shard and write it and its state file (the reference comes wrapped in a
    list so that Ray hands it over unresolved, and the worker resolves it once)."""
    from mertk.execution.sharded import check_every_input_accounted, write_shard_and_state

    process_shard = _shared(shared[0])
    result: ShardResult = process_shard(chunk)
    check_every_input_accounted(schema, index, len(chunk), result)
    return write_shard_and_state(Path(out_dir), schema, index, len(chunk), result, fingerprint, durable=True)


def _apply(shared: list, item: Any) -> Any:
    return _shared(shared[0])(item)


@dataclass
class RayExecutor:
    """Runs shards as Ray tasks; use as a context manager around the run (one Ray session).

    `address`: the cluster to join (`ray start --head` prints it; `auto` finds the local node's
    cluster); None: the RAY_ADDRESS environment variable, else a local Ray started with `workers`
    CPUs (default: every core) and stopped at the end.
    """

    address: str | None = None
    workers: int | None = None
    retries: int = TASK_RETRIES
    _started: bool = field(default=False, repr=False)

    def __enter__(self) -> "RayExecutor":
        ray = _ray()
        if ray.is_initialized():  # a session the caller opened (a notebook, a test): used as it is
            return self
        address = self.address or os.environ.get(ADDRESS_VARIABLE) or None
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address is None:
            options["num_cpus"] = self.workers or os.cpu_count() or 1
        try:
            ray.init(address=address, **options)
        except ConnectionError as error:
            raise InputError(f"--ray-address {address}: no Ray cluster answers there ({error})") from None
        self._started = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def describe(self) -> str:
        ray = _ray()
        resources = ray.cluster_resources()
        return f"Ray: {len(ray.nodes())} node(s), {int(resources.get('CPU', 0))} CPUs"

    def _window(self) -> int:
        return max(2, TASKS_PER_CPU * int(_ray().cluster_resources().get("CPU", 1)))

    def _run(self, function: Callable, shared: Any, calls: dict[int, tuple], describe: Callable[[int], str], done: Callable[[int, Any], None]) -> None:
        """Submit function(shared, *calls[i]) for every i (a bounded window at a time); done(i, result) as each ends."""
        ray = _ray()
        remote = ray.remote(num_cpus=1, max_retries=self.retries)(function)
        shared_reference = ray.put(shared)
        todo = sorted(calls, reverse=True)
        running: dict[Any, int] = {}
        window = self._window()
        try:
            while todo or running:
                while todo and len(running) < window:
                    index = todo.pop()
                    running[remote.remote([shared_reference], *calls[index])] = index
                finished, _ = ray.wait(list(running), num_returns=1)
                for reference in finished:
                    index = running.pop(reference)
                    done(index, self._result(ray, reference, describe(index)))
        finally:
            for reference in running:  # a failed run: the rest is not waited for
                ray.cancel(reference, force=True)

    def _result(self, ray: Any, reference: Any, what: str) -> Any:
        try:
            return ray.get(reference)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None  # the method's own error (bad input names its file)
            raise RunError(f"{what}: {error}") from None
        except ray.exceptions.RayError as error:
            raise RunError(
                f"{what}: its Ray worker was lost {self.retries + 1} times ({type(error).__name__}); "
                f"finished shards are kept: run the same command again to resume"
            ) from None

    def run_shards(
        self,
        out_dir: Path,
        schema: Schema,
        chunks: dict[int, list[Any]],
        process_shard: Callable[[list[Any]], ShardResult],
        fingerprint: str,
        advance: Callable[[int], None],
    ) -> dict[int, dict[str, Any]]:
        """Label and write every shard of `chunks` on the cluster; their states, by shard index."""
        from mertk.shards.manifest import shard_name

        states: dict[int, dict[str, Any]] = {}

        def done(index: int, state: dict[str, Any]) -> None:
            states[index] = state
            advance(len(chunks[index]))

        calls = {index: (str(out_dir), schema, index, chunk, fingerprint) for index, chunk in chunks.items()}
        self._run(_process_and_write, process_shard, calls, lambda i: shard_name(schema, i), done)
        return states

    def map_ordered(self, function: Callable[[Any], Any], items: Sequence[Any], advance: Callable[[int], None] | None = None) -> list[Any]:
        """[function(item) for item in items], run as Ray tasks (`function` shared once); results in order."""
        results: dict[int, Any] = {}

        def done(index: int, result: Any) -> None:
            results[index] = result
            if advance is not None:
                advance(1)

        self._run(_apply, function, {i: (item,) for i, item in enumerate(items)}, lambda i: f"task {i}", done)
        return [results[i] for i in range(len(items))]


def open_executor(kind: str, address: str | None = None, workers: int | None = None) -> Any:
    """A context manager giving the executor for `--executor kind`: None (this machine) or a RayExecutor."""
    import contextlib

    if kind == "local":
        return contextlib.nullcontext(None)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
