"""Intensity words from magnitude bins calibrated on the corpus being built.

Micro-expression amplitudes differ between corpora, cameras and crops, so fixed thresholds would
call everything "slight" in one corpus and "strong" in another. The bin edges are quantiles of
the magnitudes of all *supported* AU motions of the run (default: tertiles), computed after every
sample's evidence is known and before any caption is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

INTENSITY_WORDS = ("slight", "moderate", "pronounced")
DEFAULT_QUANTILES = (1 / 3, 2 / 3)
# Used when a run has too few supported motions to calibrate (percent of inter-ocular distance).
FALLBACK_EDGES = (1.5, 3.0)
MIN_CALIBRATION_SAMPLES = 3


@dataclass(frozen=True)
class IntensityBins:
    """Edges (percent of IOD) between the words; len(edges) == len(words) - 1."""

    edges: tuple[float, ...]
    words: tuple[str, ...] = INTENSITY_WORDS
    calibrated_on: int = 0  # number of supported motions the edges came from (0: fallback)

    def word(self, magnitude: float) -> str:
        index = int(np.searchsorted(np.asarray(self.edges), magnitude, side="right"))
        return self.words[index]

    def to_dict(self) -> dict:
        return {"edges_pct_iod": [round(e, 6) for e in self.edges], "words": list(self.words), "calibrated_on": self.calibrated_on}


def calibrate_intensity_bins(magnitudes: Sequence[float], quantiles: Sequence[float] = DEFAULT_QUANTILES) -> IntensityBins:
    """Quantile edges of the supported magnitudes; the fallback edges when there are fewer than 3."""
    if len(quantiles) != len(INTENSITY_WORDS) - 1 or list(quantiles) != sorted(quantiles):
        raise ValueError(f"need {len(INTENSITY_WORDS) - 1} increasing quantiles, got {list(quantiles)}")
    values = np.asarray([m for m in magnitudes if np.isfinite(m)], dtype=np.float64)
    if values.size < MIN_CALIBRATION_SAMPLES:
        return IntensityBins(FALLBACK_EDGES)
    edges = tuple(float(round(e, 6)) for e in np.quantile(values, quantiles))
    return IntensityBins(edges, calibrated_on=int(values.size))
