"""Time `mertk migrate-labels` against just reading the same feature files once, and its peak memory.

Usage: python benchmarks/bench_migrate_labels.py [--videos N | --full] [--features han|clip]
                                                 [--cache-dir DIR] [--workers N] [--repeat N]
The corpus is made by `mertk sample-data llp --videos N` into ~/.cache/mertk/ (kept and reused:
--full, i.e. 11,849 videos in the real shapes, takes about 8 GB of disk). Default: 2,000 videos.
Both the plain read and the migration run in fresh subprocesses, after one warm-up read, so the
page cache is in the same state for both. Prints wall time, the ratio to the plain read (goal
<= 1.5) and the migration's peak resident memory (goal < 2 GB), plus the pseudo-label quality.
Then the same migration with glibc's default malloc thresholds (mertk.execution.memory's
`freed_memory_kept` replaced by a no-op), alternating with the default run `--repeat` times, so
that the setting's gain is measured in the same conditions (best of each).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mertk.migration.anchors import TEXT_ANCHOR_FILE

LLP_SCALE = 11_849

READ_ONCE = """
import sys, numpy as np
from mertk.corpora.llp_features import feature_layout, read_llp_videos
root = sys.argv[1]
layout = feature_layout(sys.argv[2])
total = 0
for video in read_llp_videos(root).videos:
    for path in layout.files(root, video.video_id):
        total += np.load(path).size
print(total)
"""

MIGRATE = """
import sys, json, contextlib
import mertk.pipelines.label_migration as pipeline
from mertk.migration.config import MigrationConfig
from mertk.pipelines.label_migration import migrate_labels
if sys.argv[6] == "default-malloc":
    pipeline.freed_memory_kept = contextlib.nullcontext
config = MigrationConfig(features=sys.argv[3], workers=int(sys.argv[4]),
                         text_anchors=sys.argv[5] or None)
result = migrate_labels(sys.argv[1], sys.argv[2], config, progress=False)
print(json.dumps({split: {k: s[k] for k in ("pseudo", "naive", "videos")} for split, s in result.scores.items()}))
"""


def cpu_seconds() -> float:
    """User + system CPU seconds of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(code: str, *args: str) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of `python -c code args` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"child failed:\n{done.stderr[-4000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any child so far: run the migration last.
    return seconds, max(peak_kib, before) * 1024, done.stdout


def ensure_corpus(cache: Path, videos: int) -> Path:
    corpus = cache / f"llp_{videos}"
    marker = corpus / ".complete"
    if marker.is_file():
        return corpus
    print(f"generating {videos} videos into {corpus} (once) ...", flush=True)
    started = time.perf_counter()
    from mertk.sample_data.llp import make_sample_llp

    make_sample_llp(corpus, videos=videos, progress=sys.stderr.isatty())
    marker.write_text("ok\n")
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help=f"LLP scale: {LLP_SCALE} videos (about 8 GB on disk)")
    parser.add_argument("--features", default="han", choices=("han", "clip"))
    # Outside the checkout: a 9 GB corpus under the repository would be swept up by copies of it.
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mertk" / "bench_migrate_labels")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs with and without the malloc setting")
    args = parser.parse_args()
    videos = LLP_SCALE if args.full else args.videos

    corpus = ensure_corpus(args.cache_dir, videos)
    out = args.cache_dir / f"out_{videos}_{args.features}"
    shutil.rmtree(out, ignore_errors=True)
    anchors = str(corpus / TEXT_ANCHOR_FILE) if args.features == "clip" else ""

    run_child(READ_ONCE, str(corpus), args.features)  # warm-up: same page-cache state for both
    read_seconds, _, _ = run_child(READ_ONCE, str(corpus), args.features)
    migrate_seconds, peak_bytes, stdout = run_child(MIGRATE, str(corpus), str(out), args.features, str(args.workers), anchors, "kept")
    feature_bytes = sum(p.stat().st_size for folder in ("feats", "CLIP", "CLAP") for p in (corpus / folder).rglob("*.npy")) if videos <= 3000 else None

    print(f"corpus: {videos} videos ({args.features} features) in {corpus}")
    print(f"read the feature files once: {read_seconds:.1f} s")
    print(f"migrate-labels:              {migrate_seconds:.1f} s  (ratio {migrate_seconds / read_seconds:.2f}, goal <= 1.5)")
    print(f"peak resident memory:        {peak_bytes / 2**20:.0f} MiB  (goal < 2048 MiB)")
    if feature_bytes:
        print(f"feature bytes on disk (all five extractors): {feature_bytes / 2**30:.2f} GiB")
    scores = json.loads(stdout.strip().splitlines()[-1])
    for split, figures in scores.items():
        pseudo, naive = figures["pseudo"]["segment"], figures["naive"]["segment"]
        print(
            f"  {split:5s} ({figures['videos']} videos): segment audio {pseudo['audio']:.1f} (naive {naive['audio']:.1f}), "
            f"visual {pseudo['visual']:.1f} ({naive['visual']:.1f}), Type@AV {pseudo['type']:.1f} ({naive['type']:.1f})"
        )
    shutil.rmtree(out, ignore_errors=True)

    if args.repeat < 1:
        return
    timings: dict[str, list[float]] = {"kept": [], "default-malloc": []}
    cpu: dict[str, list[float]] = {"kept": [], "default-malloc": []}
    for repeat in range(args.repeat):
        # the order alternates: the second of two back-to-back runs is often the slower one
        for mode in list(timings) if repeat % 2 == 0 else list(timings)[::-1]:
            cpu_before = cpu_seconds()
            seconds, _, _ = run_child(MIGRATE, str(corpus), str(out), args.features, str(args.workers), anchors, mode)
            timings[mode].append(seconds)
            cpu[mode].append(cpu_seconds() - cpu_before)  # CPU time: less moved by other load than wall time
            shutil.rmtree(out, ignore_errors=True)
    for name, values in (("wall", timings), ("CPU", cpu)):
        kept, default = min(values["kept"]), min(values["default-malloc"])
        print(
            f"{name} time, glibc malloc thresholds raised (freed_memory_kept): best of {args.repeat} {kept:.2f} s; "
            f"glibc defaults: {default:.2f} s (ratio {default / kept:.3f})"
        )


if __name__ == "__main__":
    main()
