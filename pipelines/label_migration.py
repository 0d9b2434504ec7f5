"""`mertk migrate-labels`: LLP weak labels -> dense audio / visual segment pseudo-labels.

Stages, in order (the method is in mertk.migration, how it runs in mertk.execution):
1. read (migration.read): the weak-label CSVs (train, val, test) and each video's features in one
   streaming pass that also gathers the centring statistics, the prototype seeds and the segment
   cache; an unusable feature file rejects its video (manifest);
2. fit (migration.fit): anchors per class and modality (text anchors where given, otherwise
   prototypes seeded on single-label videos and refined) and thresholds (label-free, or fitted on
   the val dense labels with calibrate="val");
3. label (migration.label): scores and hard labels for every (video, modality, segment), written
   as `avvp_pseudo_label.v1` shards by the resumable sharded runner into OUT/avvp_pseudo/;
4. evaluate (migration.evaluate): the 10 AVVP metrics of the pseudo-labels beside the naive
   baseline on every split with dense labels; report (migration.report) in
   OUT/avvp_pseudo/_report.html;
5. optionally (`target`), k-nearest-neighbour migration from the labelled segment bank to another
   corpus (migration.target_corpus, neighbours by faiss in migration.neighbours), streamed: its
   statistics in one pass, then each output shard read, labelled and written by one task, into
   the sibling folder OUT/avvp_target/.
Labelling and the target run on this machine or, with executor="ray", as Ray tasks
(mertk.execution.ray_executor); the bytes are the same.
Memory: O(classes x dim x bins) for the statistics plus one block of videos (plus the bank's
neighbour index with a target: on other workers, memory-mapped from OUT/avvp_target/_state/neighbours/).
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.corpora.llp_features import FeatureLayout, feature_layout, read_llp_videos
from mertk.execution.memory import blas_single_threaded, freed_memory_kept
from mertk.execution.prefetch import EarlyResults, RangePrefetch
from mertk.execution.ray_executor import open_executor
from mertk.execution.sharded import map_ordered, run_sharded
from mertk.execution.warmup import warm_imports
from mertk.migration.config import CACHE_FOLDER, NEIGHBOURS_FOLDER, OUTPUT_FOLDER, TARGET_FOLDER, MigrationConfig, MigrationError, MigrationResult
from mertk.migration.evaluate import evaluate_splits, score_split, score_target, truth_and_baseline
from mertk.migration.fit import fit_model, text_anchors_for
from mertk.migration.generator import generated_shard, generator_labels, load_labeller
from mertk.migration.label import KeptLabels, LabelContext, arrow_numbers, arrow_strings, label_shard, label_videos
from mertk.migration.migrate import MigrationModel
from mertk.migration.read import ReadPass, read_corpus
from mertk.migration.target_corpus import (
    bank_labels,
    bank_unit_rows,
    index_files,
    knn_context,
    knn_shard,
    list_target_videos,
    merge_statistics,
    statistics_tasks,
    target_statistics,
)
from mertk.migration.transfer import read_vocabulary
from mertk.shards.layout import REPORT_NAME
from mertk.shards.manifest import command_line
from mertk.shards.schema import load_schema

SCHEMA = ("avvp_pseudo_label", 1)
PREFETCH_SHARDS = 2  # shards labelled ahead of the runner, in threads (in-process labelling only)
LATER_MODULES = ("pyarrow.compute", "pyarrow.parquet", "mertk.metrics.avvp", "mertk.migration.report", "cv2", "rich.table")


def migrate_labels(llp: Path | str, out: Path | str, config: MigrationConfig = MigrationConfig(), progress: bool = True) -> MigrationResult:
    """Run label migration on the LLP folder `llp`; outputs under `out/avvp_pseudo/` (and `out/avvp_target/`)."""
    # The run's own threads (reader pool, prefetching labellers, shard writer) use every core:
    # BLAS threads inside each product would only oversubscribe them.
    with blas_single_threaded(), freed_memory_kept():
        return _migrate_labels(Path(llp), Path(out), config, progress)


def _migrate_labels(root: Path, out: Path, config: MigrationConfig, progress: bool) -> MigrationResult:
    from mertk.migration.report import print_score_table, write_report

    config.check()
    out_dir = out / OUTPUT_FOLDER
    layout = feature_layout(config.features, config.r2plus1d)
    listing = read_llp_videos(root)
    text = text_anchors_for(config, layout)  # before the read: prototype seeds only where needed
    generator = load_labeller(config.generator, config.combine, layout) if config.generator else None  # refused before the read
    refine = any(m not in text for m in MODALITIES)
    warm_imports((*LATER_MODULES, "scipy.sparse") if refine else LATER_MODULES, then=_warm_arrow_kernels)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / CACHE_FOLDER
    read = read_corpus(
        root, listing.videos, layout, cache_dir, config.centre, progress, "migrate-labels",
        seed_modalities=[m for m in MODALITIES if m not in text],
    )
    pre = listing.rejections + read.rejections
    if not read.units:
        read.cache.remove()
        first = read.rejections[0].reason if read.rejections else "no videos listed"
        raise MigrationError(f"{root}: no video has usable {layout.name} features (first problem: {first})")
    background = ThreadPoolExecutor(1)  # truth and naive baseline, while anchors are fitted and videos labelled
    baseline = background.submit(truth_and_baseline, root, read.units)
    with open_executor(config.executor, config.ray_address, config.workers) as executor:  # None: this machine
        try:
            model, fit_summary = fit_model(root, config, layout, read, progress, text)
            generated = generator_labels(root, config, read, model, generator) if generator and config.combine != "similarity" else None
            context, prefetched, early = LabelContext(str(cache_dir), read.cache.dims, model), None, None
            if executor is None and config.workers <= 1 and generated is None:  # in process: label shards ahead, keep their labels, score splits early
                kept = KeptLabels(len(read.units))
                prefetched = RangePrefetch(
                    functools.partial(label_videos, model, read.cache, read.units), len(read.units), config.shard_videos, PREFETCH_SHARDS
                )
                early = kept.on_labelled = EarlyResults(
                    baseline, kept.labelled, lambda part: score_split(part, kept.labels, read.units), background
                )
                context = LabelContext(str(cache_dir), read.cache.dims, model, prefetched, kept)
            try:
                manifest = run_sharded(
                    out_dir,
                    load_schema(*SCHEMA),
                    read.units,
                    functools.partial(generated_shard, generated) if generated else functools.partial(label_shard, context),
                    command=command_line(),
                    parameters={**config.parameters(), "llp": str(root)},
                    shard_size=config.shard_videos,
                    pre_rejections=pre,
                    workers=config.workers,
                    description="migrate-labels: labelling",
                    progress=progress,
                    executor=executor,
                )
            finally:
                if prefetched is not None:
                    prefetched.close()
            scores, matrices = evaluate_splits(root, out_dir, read.units, context.kept, baseline.result(), early)
            target_summary = run_target(config, layout, read, model, out / TARGET_FOLDER, progress, executor) if config.target else None
        finally:
            background.shutdown(wait=True, cancel_futures=True)
            read.cache.remove()
    manifest.summary = {
        **fit_summary,
        "videos": {split: sum(1 for u in read.units if u.split == split) for split in ("train", "val", "test")},
        "scores": {split: {k: v for k, v in s.items() if k != "per_class_f1"} for split, s in scores.items()},
        **({"target": target_summary} if target_summary else {}),
        **({"generator": generated.summary if generated else generator.describe()} if generator else {}),
    }
    manifest.write(out_dir)
    report = write_report(out_dir / REPORT_NAME, config, manifest, scores, matrices, target_summary)
    print_score_table(scores, target_summary)
    return MigrationResult(out_dir, manifest, scores, target_summary, report)


def run_target(
    config: MigrationConfig, layout: FeatureLayout, read: ReadPass, model: MigrationModel, target_out: Path, progress: bool, executor: Any
) -> dict[str, Any]:
    """k-NN migration of the bank's (`read`, `model`) labels to `config.target`, written to `target_out`."""
    target_root = Path(config.target)
    source, videos, listing_rejections = list_target_videos(target_root, layout)
    tasks = statistics_tasks(videos)
    parts = map_ordered(functools.partial(target_statistics, source, config.centre), tasks, executor, "target: statistics", progress)
    statistics, usable, read_rejections = merge_statistics(parts, tasks) if parts else (None, [], [])
    units = [videos[position] for position in usable]
    if not units:
        raise MigrationError(f"{target_root}: no target video has usable {layout.name} features")
    labels = bank_labels(read, model, read_vocabulary(config.vocabulary), config.block_videos)
    context, neighbours = knn_context(
        source, statistics, len(units) * NUM_SEGMENTS, bank_unit_rows(read, model, config.block_videos), labels,
        config.neighbour_index, config.neighbours, config.vote_threshold,
    )
    # shards run elsewhere (Ray, a process pool): workers memory-map the indexes from files
    with index_files(context, target_out / NEIGHBOURS_FOLDER, shared=executor is not None or config.workers > 1) as context:
        manifest = run_sharded(
            target_out,
            load_schema(*SCHEMA),
            units,
            functools.partial(knn_shard, context),
            command=command_line(),
            parameters={**config.parameters(), "target_root": str(target_root)},
            shard_size=config.shard_videos,
            pre_rejections=listing_rejections + read_rejections,
            workers=config.workers,
            description="target: k-NN migration",
            progress=progress,
            executor=executor,
            extra_versions=("faiss-cpu",),
        )
        summary: dict[str, Any] = {"videos": len(units), "rejected": manifest.inputs_rejected, "neighbours": neighbours}
        summary.update(score_target(target_root, target_out, units))
        manifest.summary = summary
        manifest.write(target_out)
    return summary


def _warm_arrow_kernels() -> None:
    """Arrow's compute kernels load on first use: use them once while the read pass waits on files."""
    import numpy as np

    arrow_strings(["warm"]).take(arrow_numbers(np.zeros(1, dtype=np.int32)))
