"""Helpers for reader tests: real-layout corpora written with openpyxl and tiny frames."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


def frame(path: Path, suffix_ok: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), np.full((8, 8), 128, np.uint8))
    assert ok, path


def frames(folder: Path, names: Sequence[str]) -> None:
    for name in names:
        frame(folder / name)


def write_xlsx(
    path: Path,
    header: Sequence[str | None],
    rows: Sequence[Sequence[object]],
    preamble: Sequence[Sequence[object]] = (),
    other_sheets: Sequence[str] = (),
    title: str = "Sheet1",
) -> Path:
    """A workbook whose data sheet has `preamble` rows above the header; values starting with '='
    become formula cells (openpyxl stores no cached value, as a sheet saved by a script would),
    strings stay text cells (numbers stored as text), `other_sheets` come first."""
    from openpyxl import Workbook

    workbook = Workbook()
    first = workbook.active
    sheets = []
    for name in other_sheets:
        sheet = first if not sheets else workbook.create_sheet()
        sheet.title = name
        sheet.append([f"{name}: release notes, not data"])
        sheets.append(sheet)
    data = first if not sheets else workbook.create_sheet()
    data.title = title
    for row in preamble:
        data.append(list(row))
    data.append(list(header))
    for row in rows:
        data.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path
