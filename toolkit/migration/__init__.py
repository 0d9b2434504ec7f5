"""Similarity-based label migration (AVVP): LLP weak labels -> dense uni-modal segment labels.

Stages (each a plain function or a small accumulator; pipelines/label_migration.py composes them):
embedding (corpus statistics, centring, segment cache) -> anchors (prototypes or text) ->
thresholds (label-free Otsu or calibrated on val) -> migrate (scores and hard labels per
segment and modality) -> transfer (k-nearest-neighbour migration to another corpus).
"""
