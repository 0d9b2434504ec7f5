"""Time `mertk sample-data casme2` at the default and (with --full) the CASME II scale.

Prints wall seconds, seconds per sample, frames per second and megabytes written.

    .venv/bin/python benchmarks/bench_sample_casme2.py [--full] [--workers 2]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from mertk.sample_data.casme2 import SCALES, generate_casme2


def run(scale: str, workers: int) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"mertk_casme2_{scale}_"))
    try:
        start = time.perf_counter()
        summary = generate_casme2(out / "corpus", SCALES[scale], workers=workers)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    config = SCALES[scale]
    print(
        f"{scale:8s} {config.width}x{config.height} {summary.subjects} subjects {summary.samples} samples "
        f"{summary.frames} frames: {seconds:.1f} s wall ({seconds / summary.samples:.2f} s/sample, "
        f"{summary.frames / seconds:.0f} frames/s, workers={workers}), {summary.bytes_written / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the CASME II scale (255 samples, 640x480, 60 frames; ~1 GB)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run("default", args.workers)
    if args.full:
        run("casme2", args.workers)


if __name__ == "__main__":
    main()
