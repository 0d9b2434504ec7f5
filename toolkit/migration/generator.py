"""LLP pseudo-labels from a pre-trained generator (EAR): its segment probabilities within each weak label.

The evidence that a weak-label class is in a (segment, modality), in [0, 1], by `combine`:
- `generator`: the generator's segment probability q;
- `similarity`: today's migration score s = sigmoid((similarity - threshold) / temperature);
- `mean`: (q + s) / 2.
Thresholds per class and modality are set on that evidence exactly as the similarity thresholds
are (mertk.migration.thresholds): label-free by default (`midpoint` or `otsu` on the histograms
of the segments of videos carrying / lacking the class), or the F1-best cut on the val dense
labels with calibrate="val". A class migrates where evidence >= threshold, inside the weak label
only; its score is sigmoid((evidence - threshold) / temperature), 0 outside the weak label.

With `similarity` the labels are today's, unchanged (the pipeline labels as it does without a
generator, and names the generator in the manifest). The generator must have been trained on the
run's features and classes (checked on load, before the corpus is read). It reads the pooled
segments of the migration's segment cache (stored as float16).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES, NUM_CLASSES
from mertk.corpora.llp_features import FeatureLayout
from mertk.migration.anchors import SimilarityBins
from mertk.migration.config import COMBINE_RULES, MigrationConfig, VideoUnit, weak_matrix
from mertk.migration.fit import val_truth
from mertk.migration.label import pseudo_label_table, segment_similarity
from mertk.migration.migrate import MigrationModel, label_from_similarity, migrate_scores
from mertk.migration.read import ReadPass
from mertk.migration.thresholds import calibrated_thresholds, label_free_thresholds
from mertk.shards.manifest import ShardResult

GENERATOR_BLOCK_VIDEOS = 512


@dataclass(frozen=True)
class GeneratorLabeller:
    """A loaded generator checked against the run's features, and how its evidence is combined."""

    model: Any  # mertk.models.generator.PseudoLabelGenerator
    path: str
    sha256: str
    combine: str

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return {"path": self.path, "sha256": self.sha256, "combine": self.combine, "features": config.features_text(), "trained_on": config.training}


def load_labeller(path: Path | str, combine: str, layout: FeatureLayout) -> GeneratorLabeller:
    """Load `path`, refuse it (one line) if trained on other features or classes than `layout` and LLP's."""
    from mertk.errors import InputError
    from mertk.models.generator import check_compatible, load_generator
    from mertk.shards.io import file_sha256

    if combine not in COMBINE_RULES:
        raise InputError(f"--combine must be one of {', '.join(COMBINE_RULES)}, not {combine!r}")
    model = load_generator(path)
    parts = {m: [part.name for part in layout.parts(m)] for m in MODALITIES}
    check_compatible(model.config, path, layout.name, parts, {m: layout.dim(m) for m in MODALITIES}, LLP_CLASSES)
    return GeneratorLabeller(model, str(path), file_sha256(path), combine)


def generator_probabilities(labeller: GeneratorLabeller, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{modality: (n, 10, 25) float32} segment probabilities of raw pooled features {modality: (n, 10, dim)}."""
    import torch

    labeller.model.eval()
    with torch.inference_mode():
        output = labeller.model(torch.from_numpy(raw["audio"]), torch.from_numpy(raw["visual"]))
        probabilities = output.segment_bmtc.numpy()
    return {m: np.ascontiguousarray(probabilities[:, i]) for i, m in enumerate(MODALITIES)}


def combined_evidence(combine: str, probabilities: dict[str, np.ndarray] | None, similarity_scores: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """{modality: (n, 10, 25)} evidence in [0, 1] by the combination rule of the module docstring."""
    if combine == "generator":
        return probabilities
    if combine == "similarity":
        return similarity_scores
    return {m: (0.5 * (probabilities[m] + similarity_scores[m])).astype(np.float32) for m in MODALITIES}


def evidence_thresholds(
    evidence: dict[str, np.ndarray],
    weak_n_c: np.ndarray,
    rule: str,
    val_dense: dict[str, np.ndarray] | None = None,
    val_mask_n: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per modality: (25,) thresholds on the evidence and the rule that set each.

    `val_dense`: {modality: (n, 25, 10) bool} dense labels (rows outside `val_mask_n` ignored)
    for calibrate="val". Evidence e in [0, 1] is binned as 2e - 1 on the similarity histograms.
    """
    thresholds, rules = {}, {}
    for modality in MODALITIES:
        bins = SimilarityBins(dim=1, vectors=False)
        truth = val_dense[modality] if val_dense is not None else None
        bins.add(2.0 * evidence[modality] - 1.0, weak_n_c, truth_n_c_t=truth, labelled_n=val_mask_n)
        cut = label_free_thresholds(bins.counts_c_b, bins.null_counts_c_b, rule)
        rule_names = [f"label-free ({rule})" if np.isfinite(t) else "never (class absent)" for t in cut]
        if val_dense is not None:
            cut, rule_names = calibrated_thresholds(bins.positive_c_b, bins.negative_c_b, cut)
        thresholds[modality] = (np.asarray(cut, dtype=np.float64) + 1.0) / 2.0
        rules[modality] = rule_names
    return thresholds, rules


def label_from_evidence(
    evidence: dict[str, np.ndarray], weak_n_c: np.ndarray, thresholds: dict[str, np.ndarray], temperature: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (scores (n, 10, 25) float32, labels (n, 10, 25) bool)}; nothing outside the weak label."""
    out = {}
    for modality in MODALITIES:
        scores = migrate_scores(evidence[modality], weak_n_c, thresholds[modality], temperature)
        out[modality] = (scores, (evidence[modality] >= thresholds[modality]) & weak_n_c[:, None, :])
    return out


@dataclass(frozen=True)
class GeneratorLabels:
    """Every unit's labels (in cache order) and what set them, for the manifest."""

    result: dict[str, tuple[np.ndarray, np.ndarray]]
    summary: dict[str, Any]

    def block(self, start: int, stop: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {m: (scores[start:stop], labels[start:stop]) for m, (scores, labels) in self.result.items()}


def label_with_generator(
    labeller: GeneratorLabeller,
    read_block,
    similarity_block,
    videos: int,
    weak_n_c: np.ndarray,
    rule: str,
    temperature: float,
    val_dense: dict[str, np.ndarray] | None = None,
    val_mask_n: np.ndarray | None = None,
    block_videos: int = GENERATOR_BLOCK_VIDEOS,
) -> GeneratorLabels:
    """Label all `videos`: evidence block by block, thresholds on all of it, then labels.

    `read_block(start, stop)` -> {modality: (n, 10, dim) float32 raw pooled features};
    `similarity_block(start, stop)` -> {modality: (n, 10, 25) similarity scores} (unused with
    combine="generator"). Memory: the evidence, 2 x 10 x 25 floats a video.
    """
    evidence = {m: np.zeros((videos, 10, NUM_CLASSES), dtype=np.float32) for m in MODALITIES}
    for start in range(0, videos, block_videos):
        stop = min(start + block_videos, videos)
        probabilities = generator_probabilities(labeller, read_block(start, stop)) if labeller.combine != "similarity" else None
        similarity = similarity_block(start, stop) if labeller.combine != "generator" else None
        for modality, values in combined_evidence(labeller.combine, probabilities, similarity).items():
            evidence[modality][start:stop] = values
    thresholds, rules = evidence_thresholds(evidence, weak_n_c, rule, val_dense, val_mask_n)
    summary = {
        **labeller.describe(),
        "thresholds": {m: {name: (round(float(t), 4) if np.isfinite(t) else None) for name, t in zip(LLP_CLASSES, thresholds[m])} for m in MODALITIES},
        "threshold_rules": {m: dict(zip(LLP_CLASSES, rules[m])) for m in MODALITIES},
    }
    return GeneratorLabels(label_from_evidence(evidence, weak_n_c, thresholds, temperature), summary)




def dense_rows(val: tuple[np.ndarray, Any] | None, videos: int) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """{modality: (videos, 25, 10)} dense labels of the val rows (zeros elsewhere) and the val row mask,
    from (row mask, DenseLabels of the val rows in order); (None, None) without val truth."""
    if val is None:
        return None, None
    mask, dense = val
    truth = {}
    for modality, matrix in (("audio", dense.audio_v_c_t), ("visual", dense.visual_v_c_t)):
        full = np.zeros((videos, *matrix.shape[1:]), dtype=bool)
        full[mask] = matrix
        truth[modality] = full
    return truth, mask


def generator_labels(root: Path, config: MigrationConfig, read: ReadPass, model: MigrationModel, labeller: GeneratorLabeller) -> GeneratorLabels:
    """Every unit of `read` labelled from the generator's evidence, thresholds as `config` sets them."""
    weak_n_c = weak_matrix(read.units)
    truth, mask = dense_rows(val_truth(root, read.units) if config.calibrate == "val" else None, len(read.units))

    def similarity_scores(start: int, stop: int) -> dict[str, np.ndarray]:
        labelled = label_from_similarity(model, segment_similarity(model, read.cache, start, stop), weak_n_c[start:stop])
        return {m: labelled[m][0] for m in MODALITIES}

    return label_with_generator(
        labeller, lambda start, stop: {m: read.cache.read(m, start, stop) for m in MODALITIES}, similarity_scores,
        len(read.units), weak_n_c, config.threshold_rule, config.temperature, truth, mask, config.block_videos,
    )


def generated_shard(generated: GeneratorLabels, units: list[VideoUnit]) -> ShardResult:
    """The shard of `units` (consecutive cache indices) from labels already computed."""
    result = generated.block(units[0].cache_index, units[-1].cache_index + 1)
    return ShardResult(pseudo_label_table(units, result), [u.filename for u in units], [])
