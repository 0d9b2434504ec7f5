"""Benchmark of `mertk build-unimer` at CASME II scale, and of the three flow methods.

Prints:
  * samples per second and total wall time of a full build (DIS, `--workers`, default 2),
  * the time to only decode frames with the same number of processes, and the ratio build /
    decode, for three readings of "the same frames": every frame of every clip (the input the
    build is given), the frames the build reads (at full size), and those frames with the build's
    own decoder calls (motion-curve frames at half size); build and decode-only alternate
    `--repeats` times and the ratios are medians over the repeats, as wall time and as CPU time
    of all processes (the CPU ratio hardly moves with the load of a shared machine). Each build
    runs in a fresh process, as `mertk build-unimer` does: loading the dlib models and the
    modules imported on first use count (Python's start-up and the package import do not),
  * the Done-when figures against the planted truth,
  * per flow method: endpoint error (pixels of the aligned crop) of onset->apex flow against the
    planted field inside the facial regions, and its time per frame pair.

The corpus is made once by `mertk sample-data casme2 --scale casme2` (255 samples, 640x480,
60 frames each) into the cache folder and reused.

    .venv/bin/python benchmarks/bench_build_unimer.py [--cache DIR] [--workers 2] [--repeats 3] [--epe-samples 40]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mertk.execution.pools import process_pool


def ensure_corpus(cache: Path) -> Path:
    from mertk.sample_data.casme2 import SCALES, generate_casme2

    marker = cache / "mertk_sample.json"
    if marker.is_file():
        return cache
    print(f"generating the CASME II-scale corpus into {cache} (once) ...", flush=True)
    started = time.perf_counter()
    generate_casme2(cache, SCALES["casme2"], workers=2)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return cache


def _decode_chunk(jobs: list[tuple[str, bool]]) -> float:
    """Decode the frames as the build does; returns the CPU seconds this process spent on them."""
    cv2.setNumThreads(1)
    started = time.process_time()
    for path, half in jobs:
        cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_2 if half else cv2.IMREAD_GRAYSCALE)
    return time.process_time() - started


def _worker_ready(wait_s: float) -> int:
    time.sleep(wait_s)  # keeps this worker busy so that the next task starts another one
    return os.getpid()


def decode_seconds(jobs: list[tuple[str, bool]], workers: int) -> float:
    return decode_seconds_and_cpu(jobs, workers)[0]


def decode_seconds_and_cpu(jobs: list[tuple[str, bool]], workers: int) -> tuple[float, float]:
    """Wall and CPU seconds (all processes) to decode `jobs` in `workers` processes, the
    processes already started: the decoding alone, with as many processes as the build."""
    chunks = [jobs[i::workers] for i in range(workers)]
    if workers == 1:
        started = time.perf_counter()
        cpu = _decode_chunk(jobs)
        return time.perf_counter() - started, cpu
    # Started from the fork server: this process has run OpenCV's thread pool (generating the
    # corpus, the flow figures), and a worker forked from it could block on a lock those
    # threads held.
    with process_pool(workers) as pool:
        while len(set(pool.map(_worker_ready, [0.2] * workers))) < workers:
            pass
        started = time.perf_counter()
        cpu = sum(pool.map(_decode_chunk, chunks))
        return time.perf_counter() - started, cpu


BUILD_IN_FRESH_PROCESS = """
import json, resource, sys, time
from mertk.pipelines.build_unimer import UnimerParameters, build_unimer

def cpu():
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))

corpus, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
cpu_before, started = cpu(), time.perf_counter()
run = build_unimer(corpus, out, UnimerParameters(flow_method="dis"), workers=workers, progress=False)
wall = time.perf_counter() - started
# The pool's workers are children of the fork server, which reaped them: once it is stopped (and
# reaped here), their CPU time is in this process' RUSAGE_CHILDREN.
import multiprocessing.forkserver
multiprocessing.forkserver._forkserver._stop()
cpu_used = cpu() - cpu_before
jobs = []  # the frames the build decoded: onset and apex at full size, the curve frames at half size
for m in run.measurements:
    s = m.sample
    jobs += [(s.frame_file(s.onset_frame), False), (s.frame_file(m.apex_frame), False)]
    jobs += [(s.frame_file(n), True) for n in m.curve_frames]
print(json.dumps({"wall": wall, "cpu": cpu_used, "jobs": jobs, "samples": run.manifest.inputs_seen}))
"""


def timed_build(corpus: Path, out: Path, workers: int) -> dict:
    """One build in a fresh Python process: wall and CPU seconds of build_unimer, the frames it decoded."""
    done = subprocess.run([sys.executable, "-c", BUILD_IN_FRESH_PROCESS, str(corpus), str(out), str(workers)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the build failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def flow_method_figures(corpus: Path, samples: int) -> dict:
    """EPE against the planted onset->apex field inside the facial regions, and seconds per pair."""
    import pandas as pd

    from mertk.au.facs import region_boxes
    from mertk.corpora.casme2 import read_casme2
    from mertk.face import find_face
    from mertk.flow import FLOW_METHODS, endpoint_error, estimate_flow
    from mertk.flow.crop import align_face

    cv2.setNumThreads(1)
    truth = pd.read_parquet(corpus / "ground_truth.parquet").drop_duplicates("sample_id").set_index("sample_id")
    listing = read_casme2(corpus)
    pairs = []
    for sample in listing.samples[:samples]:
        apex = int(truth.loc[sample.sample_id, "apex_frame"])
        onset = cv2.imread(str(sample.frame_path(sample.onset_frame)), cv2.IMREAD_GRAYSCALE)
        apex_frame = cv2.imread(str(sample.frame_path(apex)), cv2.IMREAD_GRAYSCALE)
        face = find_face(onset, upsample=0)
        alignment = align_face(face.points_68_2)
        matrix = alignment.frame_to_crop_23
        planted = np.load(corpus / "ground_truth_flow" / (sample.sample_id.replace("/", "_") + ".npz"))["flow_hw2"]
        # The planted field in crop coordinates: resample positions, then rotate and scale the vectors.
        size = alignment.size
        u = cv2.warpAffine(planted[..., 0], matrix, (size, size), flags=cv2.INTER_LINEAR)
        v = cv2.warpAffine(planted[..., 1], matrix, (size, size), flags=cv2.INTER_LINEAR)
        linear = matrix[:, :2]
        truth_hw2 = np.stack([linear[0, 0] * u + linear[0, 1] * v, linear[1, 0] * u + linear[1, 1] * v], axis=-1).astype(np.float32)
        mask = np.zeros((size, size), bool)
        for box in region_boxes(alignment.points_to_crop(face.points_68_2)).values():
            mask |= box.mask((size, size))
        pairs.append((alignment.warp(onset), alignment.warp(apex_frame), truth_hw2, mask))
    figures = {}
    for method in FLOW_METHODS:
        errors, zero_errors, seconds = [], [], 0.0
        estimate_flow(pairs[0][0], pairs[0][1], method)  # warm-up (engine creation)
        for onset_crop, apex_crop, truth_hw2, mask in pairs:
            started = time.perf_counter()
            flow = estimate_flow(onset_crop, apex_crop, method)
            seconds += time.perf_counter() - started
            errors.append(endpoint_error(flow, truth_hw2, mask))
            zero_errors.append(endpoint_error(np.zeros_like(truth_hw2), truth_hw2, mask))
        figures[method] = {
            "epe_face_regions_px": round(float(np.mean(errors)), 4),
            "epe_of_zero_flow_px": round(float(np.mean(zero_errors)), 4),
            "ms_per_pair_224": round(1000 * seconds / len(pairs), 2),
            "pairs": len(pairs),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mertk-bench" / "casme2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epe-samples", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="builds (each followed by the decode-only runs); ratios are medians")
    parser.add_argument("--skip-build", action="store_true", help="only the flow-method figures")
    args = parser.parse_args()

    from mertk.corpora.casme2 import read_casme2
    from mertk.sample_data.casme2_truth import truth_agreement

    corpus = ensure_corpus(args.cache)
    results: dict = {"corpus": str(corpus)}
    if not args.skip_build:
        out = Path(tempfile.mkdtemp(prefix="bench-unimer-"))
        try:
            # Build and decode-only alternate `--repeats` times (fresh output folder each build);
            # the ratios are medians over the repeats, which damps the load of a shared machine.
            builds, builds_cpu, same_calls, same_calls_cpu, fulls = [], [], [], [], []
            for repeat in range(args.repeats):
                shutil.rmtree(out / "unimer", ignore_errors=True)
                build = timed_build(corpus, out, args.workers)
                builds.append(build["wall"])
                builds_cpu.append(build["cpu"])
                jobs = [(path, half) for path, half in build["jobs"]]
                full_jobs = [(path, False) for path, _ in jobs]
                wall, cpu_used = decode_seconds_and_cpu(jobs, args.workers)
                same_calls.append(wall)
                same_calls_cpu.append(cpu_used)
                fulls.append(decode_seconds(full_jobs, args.workers))
            build_s = float(np.median(builds))
            decode_same_calls = float(np.median(same_calls))
            decode_full = float(np.median(fulls))
            every_frame = [(path, False) for s in read_casme2(corpus).samples for _, path in s.frames]
            decode_every = decode_seconds(every_frame, args.workers)
            samples = build["samples"]
            results.update(
                {
                    "samples": samples,
                    "workers": args.workers,
                    "repeats": args.repeats,
                    "build_wall_s": round(build_s, 2),
                    "build_wall_s_each": [round(b, 2) for b in builds],
                    "samples_per_s": round(samples / build_s, 2),
                    "frames_decoded": len(jobs),
                    "decode_only_full_size_s": round(decode_full, 2),
                    "decode_only_same_calls_s": round(decode_same_calls, 2),
                    "decode_only_same_calls_s_each": [round(d, 2) for d in same_calls],
                    "frames_in_corpus": len(every_frame),
                    "decode_only_every_frame_s": round(decode_every, 2),
                    "ratio_build_to_decode_every_frame": round(build_s / decode_every, 2),
                    "ratio_build_to_decode_full_size": round(float(np.median([b / d for b, d in zip(builds, fulls)])), 2),
                    "ratio_build_to_decode_same_calls": round(float(np.median([b / d for b, d in zip(builds, same_calls)])), 2),
                    # CPU seconds (all processes) instead of wall time: far less sensitive to other
                    # load on the machine; equals the wall ratio on an idle machine with perfect balance.
                    "build_cpu_s": round(float(np.median(builds_cpu)), 2),
                    "decode_only_same_calls_cpu_s": round(float(np.median(same_calls_cpu)), 2),
                    "cpu_ratio_build_to_decode_same_calls": round(float(np.median([b / d for b, d in zip(builds_cpu, same_calls_cpu)])), 2),
                    "goal_wall_le_60s": build_s <= 60,
                    "truth": truth_agreement(out / "unimer", corpus / "ground_truth.parquet"),
                    "report_bytes": (out / "unimer" / "_report.html").stat().st_size,
                }
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
    results["flow_methods"] = flow_method_figures(corpus, args.epe_samples)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
