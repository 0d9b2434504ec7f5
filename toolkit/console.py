"""Terminal output shared by pipelines: one progress helper, one console for messages, one for results.

Neither console hard-wraps text: a path in an error line stays whole when the output is piped or
captured (rich would otherwise break lines at 80 columns). Progress is a live bar on a terminal and
plain lines otherwise (`description: 40/400 (10%)`), so a log of a piped run shows it too.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PIPED_WIDTH = 160  # tables rendered for a file or pipe; text lines are never wrapped at all


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=PIPED_WIDTH)
    return console


console = _console(stderr=True)  # progress, warnings, errors
stdout = _console(stderr=False)  # results (tables) that a user may pipe

PIPED_STEPS = 10  # lines per progress when not on a terminal (and at least every PIPED_SECONDS)
PIPED_SECONDS = 30.0


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`: a rich bar on a terminal, else a line per tenth of the work (stderr)."""
    if not enabled:
        yield lambda n=1: None
        return
    if not console.is_terminal:
        yield from _piped_progress(total, description)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def _piped_progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    state = {"done": 0, "next": 0, "last": time.monotonic()}
    step = max(1, -(-total // PIPED_STEPS))

    def line() -> None:
        share = f" ({100 * state['done'] // total}%)" if total else ""
        console.print(f"{description}: {state['done']}/{total}{share}", highlight=False, markup=False)

    def advance(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if state["done"] >= state["next"] or now - state["last"] >= PIPED_SECONDS:
            line()
            state["next"] = (state["done"] // step + 1) * step
            state["last"] = now

    console.print(f"{description}: 0/{total}", highlight=False, markup=False)
    state["next"] = step
    yield advance
    if state["done"] < state["next"] - step or state["done"] == 0 or state["done"] % step:
        line()
