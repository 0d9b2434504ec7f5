"""Pictures of flow fields: an HSV colour wheel picture, and arrows with region boxes over a face."""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np


def flow_picture(u_hw: np.ndarray, v_hw: np.ndarray, full_scale: float | None = None, size: int | None = None) -> np.ndarray:
    """BGR uint8 picture: hue = direction, brightness = magnitude (saturating at `full_scale`).

    `full_scale` defaults to the field's 99th percentile magnitude, so weak fields stay visible.
    """
    magnitude = np.hypot(u_hw, v_hw)
    angle = np.degrees(np.arctan2(-v_hw, u_hw)) % 360.0
    scale = full_scale if full_scale else max(float(np.percentile(magnitude, 99)), 1e-6)
    hsv = np.zeros(u_hw.shape + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / scale * 255.0, 0, 255).astype(np.uint8)
    picture = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if size:
        picture = cv2.resize(picture, (size, size), interpolation=cv2.INTER_NEAREST)
    return picture


def face_with_motion(
    face_hw: np.ndarray,
    u_hw: np.ndarray,
    v_hw: np.ndarray,
    boxes: Iterable[tuple[str, str | None, float, float, float, float]],
    boxes_scale: float,
    highlight: Sequence[tuple[str, str | None]] = (),
    size: int = 336,
    arrow_gain: float = 4.0,
) -> np.ndarray:
    """BGR picture: the grey face, region boxes (highlighted ones in green), flow arrows.

    `u_hw`/`v_hw` is a coarse field over the whole face (any grid); arrows are drawn from each
    grid cell centre, lengthened `arrow_gain` times per percent unit so micro-motion is visible.
    `boxes` are in a crop of the face `1/boxes_scale` times the picture's size.
    """
    picture = cv2.cvtColor(cv2.resize(face_hw, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    factor = size * boxes_scale
    for region, side, x0, y0, x1, y1 in boxes:
        colour = (60, 200, 60) if (region, side) in highlight else (200, 160, 60)
        cv2.rectangle(picture, (int(x0 * factor), int(y0 * factor)), (int(x1 * factor), int(y1 * factor)), colour, 1)
    rows, cols = u_hw.shape
    step_y, step_x = size / rows, size / cols
    for r in range(rows):
        for c in range(cols):
            du, dv = float(u_hw[r, c]), float(v_hw[r, c])
            if du * du + dv * dv < 0.04:
                continue
            start = (int((c + 0.5) * step_x), int((r + 0.5) * step_y))
            end = (int(start[0] + du * arrow_gain), int(start[1] + dv * arrow_gain))
            cv2.arrowedLine(picture, start, end, (40, 40, 230), 1, tipLength=0.3)
    return picture
