"""Time `mertk evaluate dave` at the real test-split size, and `mertk train dave` throughput.

Usage: python benchmarks/bench_dave.py [--unav PATH/unav100_annotations.json] [--per-video 100] [--epochs 2]

1. Evaluation: the UnAV-100 test split (2,167 videos; the real annotation file when found, else
   the packaged timelines repeated to that many videos) with `--per-video` scored segments per
   video (the UnAV code keeps 100), half near a true event. Prints seconds (wall and CPU: on a
   shared machine the CPU time is the figure to compare) for the scoring alone and for the whole
   command path (reading the UnAV-format JSON + annotations + scoring); goal: a second or two.
2. Training: a generated sample corpus (cached under ~/.cache/mertk/bench_dave), `--epochs`
   epochs of the full model and of the --no-esi --no-mode baseline on 1 CPU thread. Prints
   videos per second and the share of step time spent waiting for the batch (goal under 20%).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mertk.corpora.unav100 import read_unav_annotations
from mertk.metrics.dave_evaluation import evaluate_dave_predictions, truth_events
from mertk.metrics.detection import EventTable, detection_scores

REAL_TEST_VIDEOS = 2167
CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "unav100" / "unav100_annotations.json",
)


def test_split_truth(unav: Path | None) -> tuple[EventTable, str, Path | None]:
    if unav is not None and unav.is_file():
        return truth_events(read_unav_annotations(unav).split("test")), f"real test split ({unav})", unav
    from mertk.sample_data.unav100 import load_packaged_timelines

    _, timelines = load_packaged_timelines()
    rows = [(f"{t.video_id}#{copy}", label, start, end) for copy in range(REAL_TEST_VIDEOS // len(timelines) + 1)
            for t in timelines for start, end, label in t.events]  # fmt: skip
    videos = sorted({row[0] for row in rows})[:REAL_TEST_VIDEOS]
    keep = set(videos)
    rows = [row for row in rows if row[0] in keep]
    return EventTable.from_columns(*zip(*rows)), f"packaged timelines repeated to {len(videos)} videos (real file not found)", None


def random_predictions(truth: EventTable, per_video: int, rng: np.random.Generator) -> EventTable:
    videos, first = np.unique(truth.video, return_index=True)
    video = np.repeat(videos, per_video)
    near = rng.random(len(video)) < 0.5
    source = np.repeat(first, per_video)  # an event of that video to perturb
    length = truth.end[source] - truth.start[source]
    start = np.where(near, truth.start[source] + rng.normal(0, 0.3, len(video)) * length, rng.uniform(0, 60, len(video)))
    end = np.where(near, truth.end[source] + rng.normal(0, 0.3, len(video)) * length, start + rng.uniform(0.3, 20, len(video)))
    start, end = np.minimum(start, end).clip(0), np.maximum(start, end) + 1e-3
    label = np.where(near, truth.label[source], rng.integers(0, 100, len(video)))
    return EventTable.from_columns(video, label, start, end, rng.random(len(video)))


def bench_evaluation(unav: Path | None, per_video: int, repeats: int) -> None:
    truth, what, real_file = test_split_truth(unav)
    predicted = random_predictions(truth, per_video, np.random.default_rng(0))
    times, cpu_times = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        scores = detection_scores(truth, predicted)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    print(f"evaluation: {what}: {len(np.unique(truth.video))} videos, {len(truth)} events, {len(predicted)} predicted segments")
    print(f"  scoring (mAP at 9 tIoU thresholds): median {np.median(times):.3f} s wall ({np.median(cpu_times):.3f} s CPU) over {repeats} runs; "
          f"average mAP {100 * scores.average_map:.2f}")  # fmt: skip
    if real_file is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "predictions.json"
            database: dict[str, list] = {}
            for v, l, s, e, p in zip(predicted.video, predicted.label.tolist(), predicted.start.tolist(), predicted.end.tolist(), predicted.score.tolist()):
                database.setdefault(v, []).append({"segment": [s, e], "label_id": l, "scores": p})
            path.write_text(json.dumps({"database": database}))
            started, cpu_started = time.perf_counter(), time.process_time()
            evaluation = evaluate_dave_predictions(path, real_file, "test")
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        print(f"  whole command path (read UnAV JSON + annotation file + score): {seconds:.3f} s wall ({cpu_seconds:.3f} s CPU); "
              f"average mAP {evaluation.to_dict()['average_map']:.2f}")  # fmt: skip


def bench_training(epochs: int) -> None:
    from mertk.sample_data.unav100 import INFO_NAME, make_sample_unav100
    from mertk.training.dave import DaveTrainConfig, train_dave

    corpus = Path(os.environ.get("MERTK_CACHE", Path.home() / ".cache" / "mertk")) / "bench_dave" / "unav_80"
    if not (corpus / INFO_NAME).is_file():
        make_sample_unav100(corpus, seed=0, train=80, val=10, test=10, progress=False)
    for esi, mode in ((True, True), (False, False)):
        with tempfile.TemporaryDirectory() as run:
            config = DaveTrainConfig(unav=corpus, out=Path(run), esi=esi, mode=mode, epochs=epochs, device="cpu", threads=1,
                                     progress=False, cache_dir=corpus.parent / "cache")  # fmt: skip
            started = time.perf_counter()
            metrics = train_dave(config)
            seconds = time.perf_counter() - started
        throughput = metrics["throughput"]
        print(f"training {metrics['variant']:8s}: {metrics['videos']['train']} train videos x {epochs} epochs, batch 8, 1 thread: "
              f"{throughput['videos_per_second']:.1f} videos/s in training steps, data wait {100 * throughput['data_wait_share']:.1f}% of step time; "
              f"whole run {seconds:.1f} s (with validation, test and writing)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unav", type=Path, default=next((p for p in CANDIDATES if p.is_file()), None))
    parser.add_argument("--per-video", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    bench_evaluation(args.unav, args.per_video, args.repeats)
    bench_training(args.epochs)


if __name__ == "__main__":
    main()
