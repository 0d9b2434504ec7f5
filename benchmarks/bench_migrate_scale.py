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
the first --exact-videos. As in the real run, the Ray workers memory-map the indexes from files
written beside the run's state (target_corpus.index_files); the local run keeps them in memory.
Prints segments labelled per second, recall@10, the share of migrated labels the approximation
changes, peak memory per worker with what of it is private (RssAnon) and what is the shared,
file-backed index (its Rss and Pss in /proc/self/smaps), and the projected wall time for AudioSet
(2M clips) on 1, 8 and 64 workers from the measured per-worker rate.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
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
from mertk.migration.config import NEIGHBOURS_FOLDER
from mertk.migration.embedding import ModalityStats
from mertk.migration.neighbours import INDEX_SUFFIX, build_index, tune_and_measure
from mertk.migration.target_corpus import (
    KnnContext,
    index_files,
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


def memory_figures() -> dict[str, int]:
    """This process's peak resident bytes (ru_maxrss) and, now, its resident bytes split by kind
    (/proc/self/status: RssAnon private, RssFile file-backed, RssShmem shared memory such as Ray's
    object store) and the resident and proportional (Pss: shared pages divided among the processes
    mapping them) bytes of the mapped index files (/proc/self/smaps)."""
    figures = {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            figures[key] = int(value.split()[0]) * 1024
    figures["index_rss"] = figures["index_pss"] = 0
    in_index = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):  # a mapping's header
            in_index = len(fields) >= 6 and fields[5].endswith(INDEX_SUFFIX)
        elif in_index and fields[0] in ("Rss:", "Pss:"):
            figures[f"index_{fields[0][:-1].lower()}"] += int(fields[1]) * 1024
    return figures


def measured_knn_shard(context: KnnContext, memory_dir: str, videos: list) -> object:
    """knn_shard, then this worker's memory figures written to memory_dir/<pid>.json (the last shard's stay)."""
    result = knn_shard(context, videos)
    (Path(memory_dir) / f"{os.getpid()}.json").write_text(json.dumps(memory_figures()))
    return result


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
        process = functools.partial(knn_shard, context)
        started = time.perf_counter()
        # what migrate-labels does: shards in other processes map the indexes from files beside the run's state
        with index_files(context, out / name / NEIGHBOURS_FOLDER, shared=executor is not None) as context:
            if executor is not None:
                process = functools.partial(measured_knn_shard, context, str(memory_dir))
            run_sharded(out / name, SCHEMA, chosen, process, command="bench", parameters={},
                        shard_size=SHARD_VIDEOS, progress=False, executor=executor)
        seconds = time.perf_counter() - started
        rate = len(chosen) * NUM_SEGMENTS / seconds
        print(f"{name}: {len(chosen)} videos in {seconds:.1f} s = {rate:.0f} segments/s (each segment: audio and visual)", flush=True)
        return rate

    memory_dir = out / "worker-memory"
    memory_dir.mkdir(parents=True)
    local_rate = run("local-hnsw", "hnsw", labelled)
    local_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with RayExecutor(workers=args.workers) as executor:
        ray_rate = run("ray-hnsw", "hnsw", labelled, executor)
    index_bytes = sum(index.serialized.nbytes for index in indexes["hnsw"].values())
    gb = lambda value: f"{value / 2**30:.2f} GB"  # noqa: E731
    workers = [json.loads(path.read_text()) for path in sorted(memory_dir.glob("*.json"))]
    print(f"ray workers ({len(workers)} processes; HNSW index files {gb(index_bytes)}, memory-mapped by each):")
    for figures in workers:
        print(
            f"  peak resident {gb(figures['peak'])}; after its last shard resident {gb(figures['VmRSS'])} = "
            f"private (RssAnon) {gb(figures['RssAnon'])} + file-backed (RssFile) {gb(figures['RssFile'])} "
            f"+ shared memory (RssShmem, Ray's object store) {gb(figures['RssShmem'])}; "
            f"of the file-backed, the index files {gb(figures['index_rss'])} (Pss {gb(figures['index_pss'])})"
        )
    print(
        f"  index pages counted once per node: Pss of the index files summed over the workers "
        f"{gb(sum(f['index_pss'] for f in workers))} (files {gb(index_bytes)}); largest peak {gb(max(f['peak'] for f in workers))}, "
        f"largest private {gb(max(f['RssAnon'] for f in workers))}"
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
