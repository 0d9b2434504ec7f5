"""Fit: anchors and thresholds per class and modality, in streaming passes over the segment cache.

Anchors are text embeddings where given (language-aligned features), otherwise prototypes seeded
by the read pass and refined `refine_iterations` times. Each pass bins every fitted segment's
similarity to the current anchors (SimilarityBins); thresholds come from those histograms,
label-free (midpoint or Otsu) or, on the last pass with calibrate="val", fitted on the val dense
labels. Only an evenly spaced sample of `fit_videos` videos is fitted on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mertk.corpora.llp_annotations import (
    LLP_CLASSES,
    MODALITIES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    DenseLabels,
    WeakLabel,
    llp_annotation_files,
    read_dense_labels,
)
from mertk.corpora.llp_features import FeatureLayout
from mertk.execution.blocks import ThreadBuffers
from mertk.execution.prefetch import OrderedThreads
from mertk.migration.anchors import AnchorError, SimilarityBins, clip_text_anchors, load_text_anchors
from mertk.migration.config import MigrationConfig, MigrationError, VideoUnit, weak_matrix
from mertk.migration.migrate import MigrationModel, ModalityModel
from mertk.migration.read import ReadPass
from mertk.migration.thresholds import (
    PRESENT_QUANTILE,
    REFINE_PRESENT_QUANTILE,
    calibrated_thresholds,
    label_free_thresholds,
)

FIT_THREADS = 2  # blocks of the fitting sample computed at once


def text_anchors_for(config: MigrationConfig, layout: FeatureLayout) -> dict[str, np.ndarray]:
    """{modality: (25, dim) text anchors} of the modalities that have them (none for HAN features by default)."""
    if not (layout.language_aligned or config.text_anchors or config.clip_checkpoint):
        return {}
    anchors: dict[str, np.ndarray] = {}
    if config.text_anchors:
        anchors.update(load_text_anchors(config.text_anchors))
    if config.clip_checkpoint:
        anchors["visual"] = clip_text_anchors(config.clip_checkpoint)
    for modality, matrix in anchors.items():
        if matrix.shape[1] != layout.dim(modality):
            source = config.clip_checkpoint if modality == "visual" and config.clip_checkpoint else config.text_anchors
            raise AnchorError(
                f"{source}: {modality} text anchors have dimension {matrix.shape[1]}, but the {layout.name} "
                f"{modality} features have {layout.dim(modality)}"
            )
    return anchors


def val_truth(root: Path, units: Sequence[VideoUnit]) -> tuple[np.ndarray, DenseLabels] | None:
    """Dense labels of the val videos among `units` (eval files), with a row mask."""
    files = llp_annotation_files(root)
    if "audio" not in files or "visual" not in files:
        return None
    labelled = np.array([u.split == "val" for u in units])
    if not labelled.any():
        return None
    dense = read_dense_labels(
        files["audio"], files["visual"], [u.filename for u in units if u.split == "val"], [u.filename for u in units if u.split != "val"]
    )
    return labelled, dense


def fit_sample(units: Sequence[VideoUnit] | Sequence[WeakLabel], fit_videos: int, calibrate: str) -> np.ndarray:
    """Cache indices of the videos that anchors and thresholds are fitted on, in order.

    All videos when there are at most `fit_videos` (or `fit_videos` is 0); otherwise that many,
    evenly spaced over the corpus (deterministic), plus every val video when calibrating on val.
    """
    count = len(units)
    if fit_videos <= 0 or count <= fit_videos:
        return np.arange(count)
    chosen = set(np.linspace(0, count - 1, fit_videos).round().astype(int).tolist())
    if calibrate == "val":
        chosen |= {index for index, unit in enumerate(units) if unit.split == "val"}
    return np.array(sorted(chosen), dtype=np.int64)


def fit_model(
    root: Path,
    config: MigrationConfig,
    layout: FeatureLayout,
    read: ReadPass,
    progress: bool,
    text: dict[str, np.ndarray] | None = None,
) -> tuple[MigrationModel, dict[str, Any]]:
    """Anchors and thresholds per modality, and the summary the manifest records.

    `text`: the result of `text_anchors_for(config, layout)` if the caller has it already.
    """
    from mertk.console import progress_bar

    normalisers = {m: read.stats[m].frozen() for m in MODALITIES}
    text = text_anchors_for(config, layout) if text is None else text
    anchors: dict[str, np.ndarray] = {}
    anchor_source: dict[str, Any] = {}
    for modality in MODALITIES:
        if modality in text:
            anchors[modality] = text[modality]
            anchor_source[modality] = "text (CLIP checkpoint)" if modality == "visual" and config.clip_checkpoint else "text (file)"
        else:
            anchors[modality], seeded = read.seeds[modality].prototypes(normalisers[modality])
            anchor_source[modality] = {"kind": "prototypes", "seeded_from": dict(zip(LLP_CLASSES, seeded))}
    refine = {m for m in MODALITIES if m not in text}
    passes = config.refine_iterations + 1 if refine else 1
    weak_n_c = weak_matrix(read.units)
    val = val_truth(root, read.units) if config.calibrate == "val" else None
    if config.calibrate == "val" and val is None:
        raise MigrationError(f"{root}: --calibrate val needs val videos and AVVP_eval_audio.csv / AVVP_eval_visual.csv")
    val_rows = np.cumsum(val[0]) - 1 if val is not None else None  # unit row -> row of the val dense matrices
    sample = fit_sample(read.units, config.fit_videos, config.calibrate)
    thresholds: dict[str, np.ndarray] = {}
    rules: dict[str, list[str]] = {}
    # Each pass reads the sample's rows back from the cache into one reused block buffer per
    # thread and centres them there (fresh memory costs more than recentring). The norms do not
    # depend on the anchors: computed on the first pass, kept.
    block_rows = min(config.block_videos, len(sample)) * NUM_SEGMENTS
    buffers = ThreadBuffers()
    inverse_norms: dict[tuple[int, str], np.ndarray] = {}

    def block_part(first: int, modality: str, bins: SimilarityBins, last: bool) -> dict[str, np.ndarray]:
        """One block of the sample, one modality: what it adds to the pass's statistics."""
        chosen = sample[first : first + config.block_videos]
        n = len(chosen)
        buffer = buffers.get(modality, (block_rows, layout.dim(modality)))
        # x - mean, as Normaliser.centred computes it
        centred_r_d = read.cache.read_videos_into(modality, chosen, buffer[: n * NUM_SEGMENTS], normalisers[modality].mean_d)
        if (first, modality) not in inverse_norms:
            inverse_norms[first, modality] = normalisers[modality].inverse_norms(centred_r_d)
        inverse_norm_r = inverse_norms[first, modality]
        similarity_r_c = normalisers[modality].cosine(centred_r_d, inverse_norm_r, anchors[modality])
        similarity = similarity_r_c.reshape(n, NUM_SEGMENTS, NUM_CLASSES)
        truth = labelled = None
        if last and val is not None:
            labelled = val[0][chosen]
            truth = np.zeros((n, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
            dense = val[1].audio_v_c_t if modality == "audio" else val[1].visual_v_c_t
            truth[labelled] = dense[val_rows[chosen][labelled]]
        return bins.block_part(similarity, weak_n_c[chosen], centred_r_d, inverse_norm_r, truth, labelled)

    tasks = [(first, m) for first in range(0, len(sample), config.block_videos) for m in MODALITIES]
    with OrderedThreads(FIT_THREADS) as threads:
        for number in range(passes):
            last = number == passes - 1
            bins = {m: SimilarityBins(layout.dim(m), vectors=(m in refine and not last)) for m in MODALITIES}
            with progress_bar(len(sample), f"anchors: pass {number + 1}/{passes}", enabled=progress) as advance:
                parts = threads.map(lambda task: block_part(task[0], task[1], bins[task[1]], last), tasks)
                for (first, modality), part in zip(tasks, parts):  # added in block order
                    bins[modality].add_part(part)
                    if modality == MODALITIES[-1]:
                        advance(min(config.block_videos, len(sample) - first))
            for modality in MODALITIES:
                thresholds[modality] = label_free_thresholds(
                    bins[modality].counts_c_b,
                    bins[modality].null_counts_c_b,
                    config.threshold_rule,
                    PRESENT_QUANTILE if last else REFINE_PRESENT_QUANTILE,
                )
                rules[modality] = [f"label-free ({config.threshold_rule})" if np.isfinite(t) else "never (class absent)" for t in thresholds[modality]]
                if last and val is not None:
                    thresholds[modality], rules[modality] = calibrated_thresholds(
                        bins[modality].positive_c_b, bins[modality].negative_c_b, thresholds[modality]
                    )
                if not last and modality in refine:
                    anchors[modality] = bins[modality].refined_prototypes(
                        thresholds[modality], anchors[modality], normalisers[modality].scale_d
                    )
    model = MigrationModel(
        *(ModalityModel(normalisers[m], anchors[m], thresholds[m]) for m in MODALITIES), temperature=config.temperature
    )
    summary = {
        "anchors": anchor_source,
        "thresholds": {
            m: {name: (round(float(t), 4) if np.isfinite(t) else None) for name, t in zip(LLP_CLASSES, thresholds[m])}
            for m in MODALITIES
        },
        "threshold_rules": {m: dict(zip(LLP_CLASSES, rules[m])) for m in MODALITIES},
        "passes_over_cache": passes,
        "fit_videos": int(len(sample)),
    }
    return model, summary
