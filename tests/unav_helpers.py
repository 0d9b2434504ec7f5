"""Shared bits of the UnAV-100 tests: where the real annotation file lies."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_data_folder

_FOLDER = shared_data_folder("unav100") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "unav100"  # CI: ../shared
REAL_ANNOTATIONS = _FOLDER / "unav100_annotations.json"
needs_real_unav = pytest.mark.skipif(not REAL_ANNOTATIONS.is_file(), reason=f"real UnAV-100 annotations not found at {REAL_ANNOTATIONS}")
