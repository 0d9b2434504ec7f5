"""Time the AVVP metrics on the whole LLP test split (1,200 videos) and MER UF1/UAR on a large pool.

Usage: python benchmarks/bench_metrics.py [--llp PATH] [--repeats N]
Prints seconds per full evaluation (goal for AVVP: well under 1 s) and the ten numbers of a
perturbed prediction (real dense labels with 5% of the segments flipped and one run in ten removed).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import read_split_dense_labels
from mertk.metrics.avvp import avvp_scores
from mertk.metrics.mer import MER_PROTOCOL_CLASSES, mer_scores


def perturbed(matrix_v_c_t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flipped = matrix_v_c_t ^ (rng.random(matrix_v_c_t.shape) < 0.05)
    dropped_rows = rng.random(matrix_v_c_t.shape[:2]) < 0.1
    flipped[dropped_rows] = False
    return flipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llp", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "llp")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    _, dense = read_split_dense_labels(args.llp, "test")
    load_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    pred_a, pred_v = perturbed(dense.audio_v_c_t, rng), perturbed(dense.visual_v_c_t, rng)

    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        scores = avvp_scores(pred_a, pred_v, dense.audio_v_c_t, dense.visual_v_c_t)
        times.append(time.perf_counter() - started)
    print(f"LLP test split: {scores.videos} videos; reading the annotation CSVs: {load_seconds:.3f} s")
    print(f"AVVP ten numbers: best {min(times):.4f} s, median {float(np.median(times)):.4f} s over {args.repeats} runs")
    for level in ("segment", "event"):
        figures = scores.to_dict()[level]
        print(f"  {level:7s} " + "  ".join(f"{key} {value:.2f}" for key, value in figures.items()))

    classes = MER_PROTOCOL_CLASSES["5class"]
    n = 100_000
    labels = [classes[i] for i in rng.integers(0, 5, n)]
    predictions = [classes[i] for i in rng.integers(0, 5, n)]
    started = time.perf_counter()
    result = mer_scores(labels, predictions, classes)
    print(f"MER UF1/UAR on {n} pooled predictions: {time.perf_counter() - started:.4f} s (UF1 {result['uf1']:.4f})")


if __name__ == "__main__":
    main()
