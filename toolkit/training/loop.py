"""The resumable epoch loop both trainers share.

Why a loop of our own: an interrupted run (Ctrl-C, or a killed process) must continue from the
batch where it stopped and end with the same weights as an uninterrupted run. For that:

- the batch order of epoch e is a permutation drawn from its own generator seeded by (seed, e), so
  skipping the first k batches of an epoch on resume yields exactly the remaining batches;
- the training state (weights, optimizer, torch RNG, epoch, batches done, history, best weights)
  is written atomically every `checkpoint_every` batches, at the end of every epoch, and when the
  user interrupts (SIGINT is deferred to the end of the running batch, then the state is written
  and KeyboardInterrupt raised);
- the state records a fingerprint of the run's parameters; resuming with other parameters is
  refused rather than silently mixed.
"""
from __future__ import annotations

import copy
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from mertk.models.checkpoint import load_training_state, save_training_state
from mertk.errors import ResumeMismatchError
from mertk.execution.interrupts import DeferredInterrupt
from mertk.training.errors import TrainingError
from mertk.training.options import DEVICES
from mertk.training.progress import TrainingProgress


class DeviceError(TrainingError):
    """The requested device is not available."""


# RUN/_throughput.json: a trainer's timing figures, kept out of metrics.json so that identical runs
# write identical files everywhere else
THROUGHPUT_NAME = "_throughput.json"


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


@contextmanager
def deterministic_kernels(device: torch.device, threads: int = 0) -> Iterator[None]:
    """For the block: deterministic kernels on CPU (same seed -> same weights) and, when `threads` > 0,
    that many CPU threads (on a shared, oversubscribed machine 1 thread can be 10x faster than 2).
    Both settings are restored afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(previous_threads)


def epoch_order(n_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of items in `epoch`: a permutation fixed by (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_items, generator=generator)


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    samples_seen: int  # in this process (a resumed run counts only what it trained itself)
    data_seconds: float
    compute_seconds: float

    @property
    def samples_per_second(self) -> float:
        total = self.data_seconds + self.compute_seconds
        return self.samples_seen / total if total > 0 else 0.0

    @property
    def data_wait_share(self) -> float:
        total = self.data_seconds + self.compute_seconds
        return self.data_seconds / total if total > 0 else 0.0


@dataclass
class LoopSpec:
    """What the loop needs from a trainer.

    `fetch_batch(indices)` returns whatever `train_step(batch)` consumes (device tensors);
    `train_step` does forward, backward and optimizer step and returns the loss. `end_of_epoch(epoch)`
    returns a dict of figures; with `select_on` set, the weights of the epoch with the highest
    figure of that name are kept and restored at the end (model selection on a validation split).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    n_items: int
    batch_size: int
    epochs: int
    seed: int
    fetch_batch: Callable[[torch.Tensor], Any]
    train_step: Callable[[Any], float]
    end_of_epoch: Callable[[int], dict[str, float]] | None = None
    select_on: str | None = None
    metric_label: str | None = None  # the figure shown in the progress bar
    state_path: Path | None = None
    state_kind: str = "training"
    fingerprint: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 200  # batches
    after_step: Callable[[int], None] | None = None  # called after each batch with the global step (tests)


# Config fields that steer how a run executes, not what it computes: kept out of the resume
# fingerprint and the recorded parameters of every trainer.
RUNTIME_FIELDS = ("cache_dir", "progress", "checkpoint_every", "device", "threads")


def result_parameters(config: Any, path_fields: tuple[str, ...]) -> dict[str, Any]:
    """A trainer config as a dict of what determines its result (paths and runtime fields dropped)."""
    data = asdict(config)
    for name in (*path_fields, *RUNTIME_FIELDS):
        data.pop(name)
    return data


def _fingerprint_text(fingerprint: dict[str, Any]) -> str:
    return json.dumps(fingerprint, sort_keys=True, default=str)


def run_loop(spec: LoopSpec, progress: TrainingProgress) -> LoopResult:
    """Train `spec.model` for `spec.epochs`, resuming from `spec.state_path` when it holds a state."""
    steps_per_epoch = max(1, math.ceil(spec.n_items / spec.batch_size))
    fingerprint = _fingerprint_text(spec.fingerprint)
    epoch, step_in_epoch = 0, 0
    loss_sum, loss_count = 0.0, 0  # of the running epoch (kept across a resume: the epoch's mean stays exact)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"metric": None, "epoch": None, "weights": None}

    if spec.state_path is not None and spec.state_path.is_file():
        state = load_training_state(spec.state_path, kind=spec.state_kind)
        if state["fingerprint"] != fingerprint:
            raise ResumeMismatchError(
                f"{spec.state_path} belongs to a run with other parameters; use another --out or delete it"
            )
        spec.model.load_state_dict(state["model"])
        spec.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        epoch, step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        loss_sum, loss_count = float(state["loss_sum"]), int(state["loss_count"])
        history = json.loads(state["history"])
        best = {"metric": state["best_metric"], "epoch": state["best_epoch"], "weights": state["best_weights"]}

    def save() -> None:
        if spec.state_path is None:
            return
        save_training_state(
            spec.state_path,
            {
                "fingerprint": fingerprint,
                "model": spec.model.state_dict(),
                "optimizer": spec.optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "loss_sum": loss_sum,
                "loss_count": loss_count,
                "history": json.dumps(history),
                "best_metric": best["metric"],
                "best_epoch": best["epoch"],
                "best_weights": best["weights"],
            },
            kind=spec.state_kind,
        )

    progress.start_task(spec.epochs * steps_per_epoch, completed=epoch * steps_per_epoch + step_in_epoch)
    samples_seen, data_seconds, compute_seconds = 0, 0.0, 0.0
    with DeferredInterrupt() as interrupt:
        while epoch < spec.epochs:
            order = epoch_order(spec.n_items, spec.seed, epoch)
            spec.model.train()
            while step_in_epoch < steps_per_epoch:
                indices = order[step_in_epoch * spec.batch_size : (step_in_epoch + 1) * spec.batch_size]
                started = time.perf_counter()
                batch = spec.fetch_batch(indices)
                fetched = time.perf_counter()
                loss = spec.train_step(batch)
                finished = time.perf_counter()
                data_seconds += fetched - started
                compute_seconds += finished - fetched
                samples_seen += len(indices)
                loss_sum, loss_count = loss_sum + loss, loss_count + 1
                step_in_epoch += 1
                progress.advance(1, loss=loss)
                if spec.after_step is not None:
                    spec.after_step(epoch * steps_per_epoch + step_in_epoch)
                if interrupt.requested:
                    save()
                    raise KeyboardInterrupt(f"interrupted; state saved to {spec.state_path}")
                if spec.checkpoint_every and step_in_epoch % spec.checkpoint_every == 0 and step_in_epoch < steps_per_epoch:
                    save()
            figures: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / max(1, loss_count)}
            if spec.end_of_epoch is not None:
                figures.update(spec.end_of_epoch(epoch))
            if spec.select_on is not None:
                value = figures[spec.select_on]
                if best["metric"] is None or value > best["metric"]:
                    best = {"metric": float(value), "epoch": epoch, "weights": copy.deepcopy(spec.model.state_dict())}
            if spec.metric_label and spec.metric_label in figures:
                progress.set_metric(spec.metric_label, figures[spec.metric_label])
            history.append(figures)
            epoch, step_in_epoch = epoch + 1, 0
            loss_sum, loss_count = 0.0, 0
            save()
            if interrupt.requested:
                raise KeyboardInterrupt(f"interrupted; state saved to {spec.state_path}")

    if best["weights"] is not None:
        spec.model.load_state_dict(best["weights"])
    return LoopResult(history, best["epoch"], best["metric"], samples_seen, data_seconds, compute_seconds)


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """eval() + no_grad for the block, back to train() afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
