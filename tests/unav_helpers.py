"""Shared bits of the UnAV-100 tests: where the real annotation file lies."""
from __future__ import annotations

from pathlib import Path

import pytest

_CANDIDATES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "unav100" / "unav100_annotations.json",  # CI: ../shared
    Path("/work/shared/data/unav100/unav100_annotations.json"),
)
REAL_ANNOTATIONS = next((path for path in _CANDIDATES if path.is_file()), _CANDIDATES[0])
needs_real_unav = pytest.mark.skipif(not REAL_ANNOTATIONS.is_file(), reason=f"real UnAV-100 annotations not found at {REAL_ANNOTATIONS}")
