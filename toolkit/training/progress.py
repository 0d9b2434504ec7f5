"""Training progress: one rich bar per task, showing the running loss and the latest metric.

Drawn on stderr (the shared `mertk.console.console`) only when a terminal is attached; otherwise
every call is a no-op, so logs and tests stay clean.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mertk.console import console


class TrainingProgress:
    def __init__(self, progress: Progress | None):
        self._progress = progress
        self._task = None
        self._loss_average: float | None = None
        self._metric = ""  # kept from task to task (e.g. the pooled UF1 of the folds done so far)
        self.description = ""

    def start_task(self, total: int, completed: int = 0, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        self._loss_average = None
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(self.description, total=total, completed=completed, loss="-", metric=self._metric)

    def set_description(self, description: str) -> None:
        self.description = description

    def advance(self, steps: int = 1, loss: float | None = None) -> None:
        if loss is not None:  # exponential moving average: readable, not jumpy
            self._loss_average = loss if self._loss_average is None else 0.9 * self._loss_average + 0.1 * loss
        if self._progress is None or self._task is None:
            return
        fields = {"loss": f"{self._loss_average:.4f}"} if self._loss_average is not None else {}
        self._progress.update(self._task, advance=steps, **fields)

    def set_metric(self, name: str, value: float) -> None:
        self._metric = f"{name} {value:.3f}"
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, metric=self._metric)


@contextmanager
def training_progress(enabled: bool = True) -> Iterator[TrainingProgress]:
    if not enabled or not console.is_terminal:
        yield TrainingProgress(None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield TrainingProgress(progress)
