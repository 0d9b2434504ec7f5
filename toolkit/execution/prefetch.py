"""Threads that compute ahead of the caller, in order: the method's results do not depend on them.

numpy, BLAS and positional file reads release the GIL, so a couple of threads overlap reading,
similarity products and table building with the caller's own work (writing shards, adding
statistics). Every helper here hands results back in the order the caller asked for them, so the
output is the same bytes whatever the threads do.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

Item = TypeVar("Item")
Result = TypeVar("Result")


class OrderedThreads:
    """A few threads computing `function(item)` a few items ahead; results come back in item order.

    One pool is kept across `map` calls, so buffers a function keeps per thread (see
    mertk.execution.blocks.ThreadBuffers) are reused from one pass to the next.
    """

    def __init__(self, threads: int):
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads)

    def map(self, function: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
        """Each item's result, in order; at most threads + 1 computed and not yet taken."""
        futures: dict[int, Future] = {}
        for number in range(len(items)):
            for ahead in range(number, min(number + self.threads + 1, len(items))):
                if ahead not in futures:
                    futures[ahead] = self.pool.submit(function, items[ahead])
            yield futures.pop(number).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "OrderedThreads":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter:
    """One thread that runs writes in submission order; at most `pending` wait, so memory stays bounded."""

    def __init__(self, pending: int = 3):
        self.pending = pending
        self.pool = ThreadPoolExecutor(1)
        self.writes: deque = deque()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        while len(self.writes) >= self.pending:
            self.writes.popleft().result()  # a failed write raises here
        self.writes.append(self.pool.submit(function, *args))

    def finish(self) -> None:
        """Wait for every write (raising the first error)."""
        while self.writes:
            self.writes.popleft().result()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RangePrefetch:
    """`compute(start, stop)` of the next `ahead` ranges of `step` items, in threads, before they are asked for.

    For a caller that walks [0, total) in ranges of `step` (the sharded runner, shard by shard):
    while it writes one range's result, the following ranges are computed. A range that was not
    prefetched (a resumed run skipping ranges) is computed on the spot.
    """

    def __init__(self, compute: Callable[[int, int], Result], total: int, step: int, ahead: int = 2):
        self.compute, self.total, self.step, self.ahead = compute, total, step, ahead
        self.pool = ThreadPoolExecutor(ahead)
        self.futures: dict[tuple[int, int], Future] = {}
        for first in range(0, min(total, ahead * step), step):  # a fresh run's first ranges
            self._submit(first)

    def _submit(self, first: int) -> tuple[int, int]:
        following = (first, min(first + self.step, self.total))
        if following[0] < following[1] and following not in self.futures:
            self.futures[following] = self.pool.submit(self.compute, *following)
        return following

    def get(self, start: int, stop: int) -> Result:
        future = self.futures.pop((start, stop), None)
        first = stop
        for _ in range(self.ahead):
            first = self._submit(first)[1]
        return future.result() if future is not None else self.compute(start, stop)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class EarlyResults:
    """Runs `work(part)` in `pool` for each group as soon as all of the group's rows are done.

    `groups`: a future of {key: part}, each part holding its row indices under "rows"; `done`: a
    bool array over rows that the caller fills as rows finish, calling this object after each
    step. Groups not complete by then are left to the caller (not in `futures`).
    """

    def __init__(self, groups: Future, done: np.ndarray, work: Callable[[dict[str, Any]], Any], pool: ThreadPoolExecutor):
        self.groups, self.done, self.work, self.pool = groups, done, work, pool
        self.futures: dict[Any, Future] = {}
        self.last_rows: dict[Any, int] = {}

    def __call__(self) -> None:
        if not self.groups.done() or self.groups.exception() is not None:
            return  # not known yet (scored at the end then), or the caller reports the error
        for key, part in self.groups.result().items():
            if key in self.futures:
                continue
            if key not in self.last_rows:  # cheap test first: is the group's last row done?
                self.last_rows[key] = max(part["rows"])
            if self.done[self.last_rows[key]] and self.done[part["rows"]].all():
                self.futures[key] = self.pool.submit(self.work, part)
