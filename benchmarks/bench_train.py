"""Training throughput of the bundled trainers and the share of time spent waiting for data.

    .venv/bin/python benchmarks/bench_train.py [--device cpu|cuda|auto] [--epochs N] [--llp DIR] [--unimer DIR] [--threads N]

MER: a Uni-MER directory (default: a synthetic one, 10 subjects x 30 samples, written to a
temporary folder; --unimer takes the output of `mertk build-unimer`), all three experts, LOSO.
AVVP: an LLP folder (default: `sample_data/llp` if present, else a generated sample corpus),
HAN features, weak labels only.

Printed per trainer: samples/s over the training steps (forward, backward, optimizer; the fetch
of each batch included) and the share of that time spent fetching batches (goal: under 20%).
The figures come from the trainers' own timers (metrics.json `throughput`), so they measure the
real data path: packed arrays -> index -> device.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_mer(work: Path, device: str, epochs: int, unimer: Path | None, threads: int = 0) -> dict:
    from mertk.training.mer import MerTrainConfig, train_mer
    from mertk.training.synthetic import write_synthetic_unimer

    if unimer is None:
        unimer = write_synthetic_unimer(work / "unimer", subjects=10, per_subject=30, seed=0)
    started = time.perf_counter()
    metrics = train_mer(MerTrainConfig(unimer_dir=unimer, out=work / "mer", epochs=epochs, device=device, progress=False, semantic_encoder="region-stats", threads=threads))
    return {"trainer": "mer", "wall_s": round(time.perf_counter() - started, 1), "samples": metrics["pooled"]["samples"],
            "folds": metrics["pooled"]["folds"], "device": metrics["device"], **metrics["throughput"]}  # fmt: skip


def bench_avvp(work: Path, device: str, epochs: int, llp: Path | None, threads: int = 0) -> dict:
    from mertk.training.avvp import AvvpTrainConfig, train_avvp

    if llp is None:
        llp = REPO / "sample_data" / "llp"
        if not (llp / "AVVP_train.csv").is_file() or not (llp / "feats").is_dir():
            from mertk.sample_data.llp import make_sample_llp

            llp = work / "llp"
            make_sample_llp(llp, progress=False)
    started = time.perf_counter()
    metrics = train_avvp(AvvpTrainConfig(llp=llp, labels=None, out=work / "avvp", epochs=epochs, device=device, progress=False, cache_dir=work / "cache", threads=threads))
    return {"trainer": "avvp", "wall_s": round(time.perf_counter() - started, 1), "train_videos": metrics["videos"]["train"],
            "device": metrics["device"], **metrics["throughput"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--llp", type=Path)
    parser.add_argument("--unimer", type=Path)
    parser.add_argument("--only", choices=("mer", "avvp"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        work = Path(folder)
        if args.only in (None, "mer"):
            results.append(bench_mer(work, args.device, args.epochs, args.unimer, args.threads))
        if args.only in (None, "avvp"):
            results.append(bench_avvp(work, args.device, args.epochs, args.llp, args.threads))
    for result in results:
        share = result["data_wait_share"]
        verdict = "ok" if share is not None and share < 0.20 else "ABOVE GOAL"
        print(f"{result['trainer']:5s} on {result['device']}: {result['samples_per_second']} samples/s, "
              f"data wait {100 * share:.1f}% of step time ({verdict}; goal < 20%), wall {result['wall_s']} s")  # fmt: skip
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
