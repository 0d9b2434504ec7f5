"""`mertk migrate-labels --target`: the labelled LLP segments label another corpus, streamed.

Stages (mertk.migration.target_corpus, mertk.migration.neighbours), each over the executor the
run was given (this machine, or Ray):
1. list the target's videos (per-video files or feature shards);
2. its statistics, one task per block of videos (and a sample of its rows);
3. the bank: the LLP segments' unit rows and hard labels (vocabulary-mapped), a faiss index per
   modality (exact, or IVF with nprobe tuned and recall@10 measured on the sample);
4. k-NN migration, one output shard per task, written by the worker that labels it;
5. the manifest (index, its parameters and recall in `summary.neighbours`) and, where the target
   has dense truth, the quality of the migrated labels beside chance.
Output: `OUT/avvp_pseudo/target/`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS
from mertk.execution.sharded import map_ordered, run_sharded
from mertk.migration.migrate import MigrationModel
from mertk.migration.target_corpus import (
    KnnContext,
    TargetCorpusError,
    knn_shard,
    list_target_videos,
    merge_statistics,
    neighbour_indexes,
    statistics_tasks,
    target_statistics,
)
from mertk.migration.transfer import read_vocabulary
from mertk.shards.manifest import command_line
from mertk.shards.schema import load_schema


def bank_unit_rows(read: Any, model: MigrationModel, block_videos: int) -> dict[str, np.ndarray]:
    """{modality: (bank segments, dim) float32} unit rows of the labelled corpus (its own normalisation)."""
    rows = {}
    for modality in MODALITIES:
        normaliser = model.modality(modality).normaliser
        out = np.empty((read.cache.videos * NUM_SEGMENTS, read.cache.dims[modality]), dtype=np.float32)
        for start in range(0, read.cache.videos, block_videos):
            stop = min(start + block_videos, read.cache.videos)
            out[start * NUM_SEGMENTS : stop * NUM_SEGMENTS] = normaliser(read.cache.read(modality, start, stop)).reshape(-1, out.shape[1])
        rows[modality] = out
    return rows


def run_target(config: Any, layout: Any, read: Any, model: MigrationModel, out_dir: Path, progress: bool, executor: Any = None) -> dict[str, Any]:
    """Label `config.target` from the labelled bank (`read`, `model`); outputs under `out_dir/target/`."""
    from mertk.metrics.avvp import avvp_scores
    from mertk.pipelines.label_migration import SCHEMA, TARGET_FOLDER, bank_labels, dense_truth, read_pseudo_matrices

    target_root = Path(config.target)
    target_out = out_dir / TARGET_FOLDER
    source, videos, listing_rejections = list_target_videos(target_root, layout)
    tasks = statistics_tasks(videos)
    parts = map_ordered(functools.partial(target_statistics, source, config.centre), tasks, executor, "target: statistics", progress)
    statistics, usable, read_rejections = merge_statistics(parts, tasks) if parts else (None, [], [])
    units = [videos[position] for position in usable]
    if not units:
        raise TargetCorpusError(f"{target_root}: no target video has usable {layout.name} features")
    normalisers = {m: statistics.stats[m].frozen() for m in MODALITIES}
    labels = bank_labels(read, model, read_vocabulary(config.vocabulary), config.block_videos)
    sample = {m: normalisers[m](statistics.sample[m]) for m in MODALITIES}
    indexes, neighbours = neighbour_indexes(
        bank_unit_rows(read, model, config.block_videos), labels, sample, len(units) * NUM_SEGMENTS,
        config.neighbour_index, config.neighbours, config.vote_threshold,
    )
    context = KnnContext(source, normalisers, indexes, labels, config.neighbours, config.vote_threshold)
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
    truth = dense_truth(target_root, units)
    if "target" in truth:
        rows, dense, described = truth["target"]
        chosen = [units[r] for r in rows]
        predicted = read_pseudo_matrices(target_out, [u.filename for u in chosen])
        recovered = avvp_scores(predicted["audio"], predicted["visual"], dense.audio_v_c_t, dense.visual_v_c_t)
        # Chance: the same predictions given to randomly permuted videos (same label rates).
        order = np.random.default_rng(0).permutation(len(chosen))
        chance = avvp_scores(predicted["audio"][order], predicted["visual"][order], dense.audio_v_c_t, dense.visual_v_c_t)
        summary.update({"truth": described, "knn": recovered.to_dict(), "chance": chance.to_dict()})
    manifest.summary = summary
    manifest.write(target_out)
    return summary
