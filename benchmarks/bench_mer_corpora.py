"""Benchmark of `mertk build-unimer` on each MER corpus, and its recovery of the planted truth.

For each corpus a sample corpus is generated once into the cache folder (`mertk sample-data`),
SAMM at its real 2040x1088 so that the flow's staying on the face crop is measured where it
matters. Then, per corpus, it prints:
  * samples per second of a build (`mertk build-unimer --<corpus> P`, in a fresh process, as a
    user runs it: the dlib models load inside the timing), and the seconds to only decode every
    frame of every clip (grey, one process per worker), and the ratio build / decode;
  * the figures against the planted truth: planted and labelled AUs supported, labelled but not
    planted ones unsupported, estimated apexes within 3 frames at the corpus' own frame rate,
    alternatives ('or') settled on the planted option (SAMM), and for SMIC (no AU coding) the
    captions that name a planted motion.

    .venv/bin/python benchmarks/bench_mer_corpora.py [--cache DIR] [--corpora samm,smic,casme3,mmew,casme2]
        [--subjects 4] [--samples-per-subject 5] [--workers 1]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2

# corpus -> (generator module, the size it is generated at: None = the sample's default)
SIZES = {"samm": (2040, 1088), "smic": None, "casme3": None, "mmew": None, "casme2": None}


def ensure_corpus(cache: Path, corpus: str, subjects: int, per_subject: int) -> Path:
    from mertk.sample_data import casme2, casme3, mmew, samm, smic

    folder = cache / f"{corpus}-{subjects}x{per_subject}"
    if (folder / "mertk_sample.json").is_file():
        return folder
    module = {"samm": samm, "smic": smic, "casme3": casme3, "mmew": mmew, "casme2": casme2}[corpus]
    config = replace(module.SCALES["default"], subjects=subjects, samples_per_subject=per_subject, total_samples=None)
    if SIZES[corpus]:
        config = replace(config, width=SIZES[corpus][0], height=SIZES[corpus][1])
    print(f"generating the {corpus} sample ({subjects} x {per_subject}, {config.width}x{config.height}) into {folder} (once) ...", flush=True)
    started = time.perf_counter()
    getattr(module, f"generate_{corpus}")(folder, config, workers=2)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def _decode(paths: list[str]) -> int:
    cv2.setNumThreads(1)
    return sum(cv2.imread(path, cv2.IMREAD_GRAYSCALE).size for path in paths)


def decode_seconds(paths: list[str], workers: int) -> float:
    started = time.perf_counter()
    if workers <= 1:
        _decode(paths)
    else:
        from mertk.execution.pools import process_pool

        with process_pool(workers) as pool:
            list(pool.map(_decode, [paths[i::workers] for i in range(workers)]))
    return time.perf_counter() - started


def timed_build(corpus: str, folder: Path, out: Path, workers: int) -> float:
    mertk = Path(sys.executable).with_name("mertk")
    started = time.perf_counter()
    done = subprocess.run([str(mertk), "build-unimer", f"--{corpus}", str(folder), "--out", str(out), "--workers", str(workers), "--no-report"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the {corpus} build failed:\n{done.stdout}\n{done.stderr}")
    return wall


def truth_figures(corpus: str, folder: Path, unimer: Path) -> dict:
    import pandas as pd

    from mertk.sample_data.casme2_truth import truth_agreement
    from mertk.shards.dataset import read_shards

    truth = pd.read_parquet(folder / "ground_truth.parquet")
    rows = {r["sample_id"]: r for r in read_shards(unimer).to_pylist()}
    figures = {}
    if corpus != "smic":
        plain = truth[~truth["alternative"]] if "alternative" in truth else truth
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "truth.parquet"
            plain.to_parquet(path)
            agreement = truth_agreement(unimer, path)
        for key in ("planted_labelled_supported", "labelled_unplanted_rejected", "slash_apex_within"):
            figures[key] = agreement[key]
    if "alternative" in truth and truth["alternative"].any():
        hits = total = 0
        for sample_id, group in truth[truth["alternative"]].groupby("sample_id"):
            planted = {f"{side if isinstance(side, str) else ''}{au}" for au, side in group[group.planted][["au", "side"]].itertuples(index=False)}
            for item in rows[sample_id]["au_alternatives"]:
                total += 1
                chosen = re.sub(r"^(ref|[AUTB])(?=[LR]?\d)|[A-E](/[A-E])?$|\(|\)", "", item["chosen"] or "")
                hits += chosen in planted
        figures["alternatives_settled_on_planted"] = {"rate": hits / total if total else None, "hits": hits, "total": total}
    if corpus == "smic":
        hits = 0
        for sample_id, group in truth.groupby("sample_id"):
            named = {int(au) for au in re.findall(r"\(AU(\d+)\)", rows[sample_id]["caption"])}
            hits += bool(named & set(group[group.planted]["au"].astype(int)))
        figures["captions_name_planted_motion"] = {"rate": hits / len(rows), "hits": hits, "total": len(rows)}
        apex_truth = truth.drop_duplicates("sample_id").set_index("sample_id")["apex_frame"]
        within = sum(abs(int(r["apex_frame"]) - int(apex_truth[i])) <= 3 for i, r in rows.items())
        figures["slash_apex_within"] = {"rate": within / len(rows), "hits": within, "total": len(rows)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mertk-bench" / "mer-corpora")
    parser.add_argument("--corpora", default="samm,smic,casme3,mmew,casme2")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--samples-per-subject", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from mertk.corpora.readers import READERS

    results = {}
    for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
        folder = ensure_corpus(args.cache, corpus, args.subjects, args.samples_per_subject)
        listing = READERS[corpus](folder)
        frames = [path for sample in listing.samples for _, path in sample.frames]
        with tempfile.TemporaryDirectory() as scratch:
            build = timed_build(corpus, folder, Path(scratch), args.workers)
            decode = decode_seconds(frames, args.workers)
            figures = truth_figures(corpus, folder, Path(scratch) / "unimer")
        size = cv2.imread(frames[0], cv2.IMREAD_UNCHANGED).shape
        results[corpus] = {
            "samples": len(listing.samples),
            "frames": len(frames),
            "frame_size": f"{size[1]}x{size[0]}",
            "build_seconds": round(build, 2),
            "samples_per_second": round(len(listing.samples) / build, 2),
            "decode_every_frame_seconds": round(decode, 2),
            "build_over_decode": round(build / decode, 2),
            "truth": figures,
        }
        line = ", ".join(f"{k} {v['hits']}/{v['total']}" for k, v in figures.items())
        print(
            f"{corpus:7s} {len(listing.samples):3d} samples {results[corpus]['frame_size']:>10s}: {results[corpus]['samples_per_second']:6.2f} samples/s, "
            f"build {build:6.1f} s / decode every frame {decode:5.1f} s = {build / decode:5.2f}; {line}",
            flush=True,
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
