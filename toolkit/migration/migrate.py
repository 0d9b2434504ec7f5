"""The migration step: similarity to the weak classes' anchors -> soft scores and hard labels.

score = sigmoid((similarity - threshold) / temperature) for the classes of the video's weak
label, 0 for every other class (a class outside the weak label never migrates); the hard label
is score >= 0.5, i.e. similarity >= threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_CLASSES
from mertk.migration.embedding import Normaliser

DEFAULT_TEMPERATURE = 0.05


@dataclass(frozen=True)
class ModalityModel:
    """Everything needed to label one modality: normaliser, anchors (25, dim), thresholds (25,)."""

    normaliser: Normaliser
    anchors_c_d: np.ndarray
    thresholds_c: np.ndarray


@dataclass(frozen=True)
class MigrationModel:
    audio: ModalityModel
    visual: ModalityModel
    temperature: float = DEFAULT_TEMPERATURE

    def modality(self, modality: str) -> ModalityModel:
        return self.audio if modality == "audio" else self.visual


def similarities(unit_n_t_d: np.ndarray, anchors_c_d: np.ndarray) -> np.ndarray:
    """(n, 10, 25) cosine similarity of unit segment rows to unit anchors."""
    return unit_n_t_d @ anchors_c_d.T


def migrate_scores(similarity_n_t_c: np.ndarray, weak_n_c: np.ndarray, thresholds_c: np.ndarray, temperature: float) -> np.ndarray:
    """(n, 10, 25) float32 soft scores in [0, 1]; exactly 0 outside the weak label."""
    with np.errstate(over="ignore", invalid="ignore"):
        logits = (similarity_n_t_c - thresholds_c) / temperature
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    scores = np.where(np.isfinite(thresholds_c), scores, 0.0)
    return (scores * weak_n_c[:, None, :]).astype(np.float32)


def label_from_similarity(
    model: MigrationModel, similarity: dict[str, np.ndarray], weak_n_c: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (scores (n, 10, 25) float32, labels (n, 10, 25) bool)} from similarities to the anchors."""
    out = {}
    for modality in MODALITIES:
        thresholds_c = model.modality(modality).thresholds_c
        scores = migrate_scores(similarity[modality], weak_n_c, thresholds_c, model.temperature)
        out[modality] = (scores, (similarity[modality] >= thresholds_c) & weak_n_c[:, None, :])
    return out


def migrate_block(
    model: MigrationModel, raw: dict[str, np.ndarray], weak_n_c: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Label a block of videos from raw pooled features {modality: (n, 10, dim)}."""
    similarity = {
        m: similarities(model.modality(m).normaliser(raw[m]), model.modality(m).anchors_c_d) for m in MODALITIES
    }
    return label_from_similarity(model, similarity, weak_n_c)


def naive_labels(weak_n_c: np.ndarray) -> np.ndarray:
    """(n, 25, 10) bool: the weak label copied to every segment (the baseline of the report)."""
    return np.repeat(weak_n_c[:, :, None], 10, axis=2)


__all__ = ["MigrationModel", "ModalityModel", "label_from_similarity", "migrate_block", "migrate_scores", "similarities", "naive_labels", "NUM_CLASSES"]
