"""Label migration at pre-training scale: a VGGSound-sized target in the shard layout, local vs Ray, exact vs HNSW.

Usage: python benchmarks/bench_migrate_scale.py [--target-videos 200000] [--label-videos 20000]
                                                [--exact-videos 2000] [--workers 2] [--cache-dir DIR]
Corpora (CLIP/CLAP features, float16 Parquet shards of 2,000 videos, made once by the shard
generator and reused): the bank is an LLP-scale corpus (11,849 videos, about 118k segments per
modality) whose planted truth stands in for its migrated labels; the target has --target-videos
videos (200,000: VGGSound scale, about 6 GB). What runs is what `migrate-labels --target` runs:
the target's statistics pass over every video, the faiss index per modality (HNSW tuned on a
sample; exact for comparison), then k-NN labelling of the first --label-videos target videos with
`--executor local` and with Ray (--workers), whose bytes must agree, and with exact neighbours on
the first --exact-videos. Prints segments labelled per second, recall@10, the share of migrated
labels the approximation changes, peak memory per worker, and the projected wall time for
AudioSet (2M clips) on 1, 8 and 64 workers from the measured per-worker rate.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import GROUND_TRUTH_FILES, MODALITIES, NUM_SEGMENTS, read_dense_labels
from mertk.corpora.llp_feature_shards import ShardBlockReader
from mertk.corpora.llp_features import feature_layout
from mertk.execution.ray_executor import RayExecutor
from mertk.execution.sharded import map_ordered, run_sharded
from mertk.migration.embedding import ModalityStats
from mertk.migration.neighbours import build_index, tune_and_measure
from mertk.migration.target_corpus import (
    KnnContext,
    knn_shard,
    list_target_videos,
    merge_statistics,
    statistics_tasks,
    target_statistics,
)
from mertk.sample_data.llp_shards import ShardLayoutOptions, make_sample_llp_shards
from mertk.shards.schema import load_schema

LLP_VIDEOS = 11_849
AUDIOSET_CLIPS = 2_000_000
SHARD_VIDEOS = 256  # output shard size (migrate-labels' default)
NEIGHBOURS, VOTE_THRESHOLD = 10, 0.5
SCHEMA = load_schema("avvp_pseudo_label", 1)


def ensure(folder: Path, videos: int, seed: int) -> Path:
    if not (folder / "mertk_sample.json").is_file():
        print(f"generating {videos} videos into {folder} (once) ...", flush=True)
        options = ShardLayoutOptions(videos_per_shard=2000, features="clip", file_format="parquet", dtype="float16")
        make_sample_llp_shards(folder, videos=videos, seed=seed, options=options, progress=False)
    return folder


def peak_rss_bytes(_: int = 0) -> tuple[int, int]:
    """(pid, peak resident bytes) of the worker that runs it; resident memory counts the pages of
    Ray's object store the worker read (the index bytes, held once per node) in every worker."""
    time.sleep(0.2)  # keeps each worker busy so that the probes spread over all of them
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def changed_labels(approximate: Path, exact: Path) -> tuple[int, int]:
    """(labels that differ, labels migrated with exact neighbours) over the shards of `exact`, row by row."""
    import pyarrow.parquet as pq

    changed = migrated = 0
    for path in sorted(exact.glob("*.parquet")):
        rows_a = pq.read_table(approximate / path.name, columns=["labels"]).column("labels").to_pylist()
        rows_e = pq.read_table(path, columns=["labels"]).column("labels").to_pylist()
        changed += sum(len(set(a) ^ set(e)) for a, e in zip(rows_a, rows_e))
        migrated += sum(len(e) for e in rows_e)
    return changed, migrated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-videos", type=int, default=200_000)
    parser.add_argument("--label-videos", type=int, default=20_000)
    parser.add_argument("--exact-videos", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bank-videos", type=int, default=LLP_VIDEOS, help="smaller only to try the script out")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mertk" / "bench")
    args = parser.parse_args()
    layout = feature_layout("clip")
    bank_root = ensure(args.cache_dir / f"bank-clip-{args.bank_videos}-seed0", args.bank_videos, 0)
    target_root = ensure(args.cache_dir / f"target-clip-{args.target_videos}-seed1", args.target_videos, 1)
    out = args.cache_dir / "runs"
    shutil.rmtree(out, ignore_errors=True)

    # the bank: its unit rows and (planted) labels per modality
    started = time.perf_counter()
    _, bank_videos, _ = list_target_videos(bank_root, layout)
    reader = ShardBlockReader(layout)
    stats = {m: ModalityStats.for_layout(layout, m) for m in MODALITIES}
    raw = {m: np.empty((len(bank_videos), NUM_SEGMENTS, layout.dim(m)), np.float16) for m in MODALITIES}
    for first in range(0, len(bank_videos), 512):
        block = reader.read([v.location for v in bank_videos[first : first + 512]])
        for m in MODALITIES:
            stats[m].add_block(block.sums[m], block.part_squares[m], len(block.video_ids) * NUM_SEGMENTS)
            raw[m][first : first + len(block.video_ids)] = block.arrays[m]
    bank_rows = {m: stats[m].frozen()(raw[m]).reshape(-1, layout.dim(m)) for m in MODALITIES}
    del raw
    dense = read_dense_labels(*(bank_root / GROUND_TRUTH_FILES[m] for m in MODALITIES), [v.filename for v in bank_videos])
    bank_labels = {
        "audio": dense.audio_v_c_t.transpose(0, 2, 1).reshape(-1, 25),
        "visual": dense.visual_v_c_t.transpose(0, 2, 1).reshape(-1, 25),
    }
    print(f"bank: {len(bank_videos)} videos, {bank_rows['audio'].shape[0]} segments per modality ({time.perf_counter() - started:.1f} s)")

    # the target: listing and statistics over every video
    started = time.perf_counter()
    source, videos, rejections = list_target_videos(target_root, layout)
    listed = time.perf_counter() - started
    tasks = statistics_tasks(videos)
    started = time.perf_counter()
    parts = map_ordered(functools.partial(target_statistics, source, True), tasks, None, "target statistics", progress=False)
    statistics_seconds = time.perf_counter() - started
    statistics, usable, bad = merge_statistics(parts, tasks)
    normalisers = {m: statistics.stats[m].frozen() for m in MODALITIES}
    sample = {m: normalisers[m](statistics.sample[m]) for m in MODALITIES}
    print(
        f"target: {len(videos)} videos ({len(videos) * NUM_SEGMENTS} segments per modality) in "
        f"{len(list(target_root.glob('shards/*.parquet')))} shards, {sum(p.stat().st_size for p in target_root.glob('shards/*')) / 1e9:.1f} GB; "
        f"listed in {listed:.1f} s, statistics pass {statistics_seconds:.1f} s ({len(videos) / statistics_seconds:.0f} videos/s), "
        f"{len(rejections) + len(bad)} rejected"
    )

    # the indexes: exact and HNSW (efSearch tuned on the sample), recall@10 and changed labels on the sample
    indexes = {"exact": {}, "hnsw": {}}
    for m in MODALITIES:
        started = time.perf_counter()
        indexes["exact"][m] = build_index(bank_rows[m], "exact")
        exact_build = time.perf_counter() - started
        started = time.perf_counter()
        graph = build_index(bank_rows[m], "hnsw")
        graph_build = time.perf_counter() - started
        started = time.perf_counter()
        indexes["hnsw"][m], measure = tune_and_measure(graph, bank_rows[m], sample[m], bank_labels[m], NEIGHBOURS, VOTE_THRESHOLD)
        tune = time.perf_counter() - started
        figures = measure.to_dict(NEIGHBOURS)
        print(
            f"{m}: exact index {exact_build:.1f} s; HNSW built in {graph_build:.1f} s, efSearch {indexes['hnsw'][m].ef_search} "
            f"(tuned in {tune:.1f} s: {figures['efSearch_recall_at_10']}); on {figures['sample_queries']} sampled segments "
            f"recall@10 {figures['recall_at_10']:.4f}, migrated labels changed {figures['labels_changed']}/{figures['labels_exact']} "
            f"= {100 * figures['labels_changed_share']:.2f} %"
        )
    del bank_rows

    units = [videos[p] for p in usable]
    labelled = units[: args.label_videos]

    def run(name: str, kind: str, chosen, executor=None) -> float:
        context = KnnContext(source, normalisers, indexes[kind], bank_labels, NEIGHBOURS, VOTE_THRESHOLD)
        started = time.perf_counter()
        run_sharded(out / name, SCHEMA, chosen, functools.partial(knn_shard, context), command="bench", parameters={},
                    shard_size=SHARD_VIDEOS, progress=False, executor=executor)
        seconds = time.perf_counter() - started
        rate = len(chosen) * NUM_SEGMENTS / seconds
        print(f"{name}: {len(chosen)} videos in {seconds:.1f} s = {rate:.0f} segments/s (each segment: audio and visual)", flush=True)
        return rate

    local_rate = run("local-hnsw", "hnsw", labelled)
    local_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with RayExecutor(workers=args.workers) as executor:
        started = time.perf_counter()
        ray_rate = run("ray-hnsw", "hnsw", labelled, executor)
        peaks = dict(executor.map_ordered(peak_rss_bytes, list(range(8 * args.workers))))
        index_bytes = sum(index.serialized.nbytes for index in indexes["hnsw"].values())
        print(
            f"ray workers ({len(peaks)} processes): peak resident memory {', '.join(f'{p / 2**30:.2f} GB' for p in sorted(peaks.values()))} "
            f"(of which the shared index bytes in the object store: {index_bytes / 2**30:.2f} GB)"
        )
    same = digest(out / "local-hnsw") == digest(out / "ray-hnsw")
    print(f"ray shards identical to local: {same}; local process peak (bank, indexes, statistics, labelling) {local_peak / 2**30:.2f} GB")
    exact_rate = run("local-exact", "exact", labelled[: args.exact_videos])
    changed, migrated = changed_labels(out / "local-hnsw", out / "local-exact")
    print(
        f"exact vs HNSW on {args.exact_videos} videos: {exact_rate:.0f} vs {local_rate:.0f} segments/s "
        f"(HNSW / exact: {local_rate / exact_rate:.2f}); migrated labels changed {changed}/{migrated} = {100 * changed / max(migrated, 1):.2f} %"
    )

    per_worker = ray_rate / args.workers
    statistics_per_video = statistics_seconds / len(videos)
    print(f"per-worker rate (ray, {args.workers} workers on this machine): {per_worker:.0f} segments/s")
    for workers in (1, 8, 64):
        hours = (AUDIOSET_CLIPS * NUM_SEGMENTS / (per_worker * workers) + AUDIOSET_CLIPS * statistics_per_video / workers) / 3600
        print(f"projected AudioSet ({AUDIOSET_CLIPS} clips, {AUDIOSET_CLIPS * NUM_SEGMENTS} segments per modality) on {workers:>2} workers: {hours:.2f} h")
    if not same:
        sys.exit("ray and local outputs differ")


if __name__ == "__main__":
    main()
