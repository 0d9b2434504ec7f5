"""Similarity-based label migration (AVVP): LLP weak labels -> dense uni-modal segment labels.

The method, one module a stage (pipelines/label_migration.py composes them; how they run, in
threads, blocks or processes, is mertk.execution's business):
config (settings, result, the labelled unit) -> read (features once: statistics, prototype
seeds, segment cache) -> fit (anchors: prototypes or text; thresholds: label-free or calibrated
on val) -> label (scores and hard labels per segment and modality, shard rows) -> evaluate
(dense truth, naive baseline, AVVP scores) -> transfer (k-nearest-neighbour migration to another
corpus) -> report. Building blocks: embedding (statistics, centring, the cache), anchors,
thresholds, migrate (similarity -> scores and labels).
"""
