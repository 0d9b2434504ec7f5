"""Pictures of flow fields: an HSV colour picture and its key (a direction wheel), and arrows
with region boxes over a face. OpenCV draws them (BGR uint8), so a report of hundreds of
samples stays cheap."""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 40, 40)
SUPPORTED_BOX = (60, 200, 60)  # green: a labelled AU that the flow supports
OTHER_BOX = (200, 160, 60)  # blue: any other facial region
ARROW = (0, 215, 255)  # amber, drawn over a dark outline: visible on light and dark skin
ARROW_OUTLINE = (20, 20, 20)


def _hsv_picture(angle_deg: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    hsv = np.zeros(angle_deg.shape + (3,), np.uint8)
    hsv[..., 0] = (angle_deg / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(brightness * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def colour_scale(u_hw: np.ndarray, v_hw: np.ndarray, full_scale: float | None = None) -> float:
    """The magnitude drawn at full brightness: `full_scale`, else the field's 99th percentile."""
    return full_scale if full_scale else max(float(np.percentile(np.hypot(u_hw, v_hw), 99)), 1e-6)


def flow_picture(u_hw: np.ndarray, v_hw: np.ndarray, full_scale: float | None = None, size: int | None = None) -> np.ndarray:
    """BGR uint8 picture: hue = direction, brightness = magnitude (saturating at `full_scale`).

    `full_scale` defaults to the field's 99th percentile magnitude, so weak fields stay visible.
    """
    angle = np.degrees(np.arctan2(-v_hw, u_hw)) % 360.0
    picture = _hsv_picture(angle, np.hypot(u_hw, v_hw) / colour_scale(u_hw, v_hw, full_scale))
    if size:
        picture = cv2.resize(picture, (size, size), interpolation=cv2.INTER_NEAREST)
    return picture


def direction_wheel(diameter: int) -> np.ndarray:
    """The key of `flow_picture` on white: a disc whose hue at each point is the colour of motion
    in that direction (up, right, ...), brightness growing from none at the centre to full at the rim."""
    radius = diameter / 2.0
    ys, xs = np.mgrid[0:diameter, 0:diameter].astype(np.float32) + 0.5
    dx, dy = xs - radius, ys - radius
    distance = np.hypot(dx, dy)
    wheel = _hsv_picture(np.degrees(np.arctan2(-dy, dx)) % 360.0, distance / radius)
    wheel[distance > radius] = 255
    return wheel


def text(canvas: np.ndarray, words: str, origin: tuple[int, int], scale: float = 0.5, colour=INK, align: str = "left", thickness: int = 1) -> None:
    """`words` with its vertical middle at `origin`'s y; x is its left end, centre or right end."""
    (width, height), _ = cv2.getTextSize(words, FONT, scale, thickness)
    x, y = origin
    if align == "centre":
        x -= width // 2
    elif align == "right":
        x -= width
    cv2.putText(canvas, words, (int(x), int(y + height // 2)), FONT, scale, colour, thickness, cv2.LINE_AA)


def colour_key(diameter: int = 120) -> np.ndarray:
    """The direction wheel with its four directions named, on white: the key of `flow_picture`
    (drawn once per report; each picture's full-brightness magnitude goes beside it)."""
    margin_x, margin_y = 56, 26
    canvas = np.full((diameter + 2 * margin_y, diameter + 2 * margin_x, 3), 255, np.uint8)
    canvas[margin_y : margin_y + diameter, margin_x : margin_x + diameter] = direction_wheel(diameter)
    cx, cy = margin_x + diameter // 2, margin_y + diameter // 2
    text(canvas, "up", (cx, margin_y - 13), 0.5, align="centre")
    text(canvas, "down", (cx, margin_y + diameter + 13), 0.5, align="centre")
    text(canvas, "left", (margin_x - 6, cy), 0.5, align="right")
    text(canvas, "right", (margin_x + diameter + 6, cy), 0.5)
    return canvas


def face_with_motion(
    face_hw: np.ndarray,
    u_hw: np.ndarray,
    v_hw: np.ndarray,
    boxes: Iterable[tuple[str, str | None, float, float, float, float]],
    boxes_scale: float,
    highlight: Sequence[tuple[str, str | None]] = (),
    size: int = 336,
    arrow_gain: float | None = None,
    min_fraction: float = 0.2,
) -> np.ndarray:
    """BGR picture: the grey face, region boxes (highlighted ones in green), flow arrows.

    `u_hw`/`v_hw` is a coarse field over the whole face (any grid); an arrow starts at each grid
    cell centre whose motion is at least `min_fraction` of the strongest, lengthened
    `arrow_gain` pixels per unit (default: the strongest motion drawn two cells long), so that
    micro-motion is visible. `boxes` are in a crop of the face `1/boxes_scale` times the
    picture's size.
    """
    picture = cv2.cvtColor(cv2.resize(face_hw, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    factor = size * boxes_scale
    for region, side, x0, y0, x1, y1 in boxes:
        supported = (region, side) in highlight
        cv2.rectangle(picture, (int(x0 * factor), int(y0 * factor)), (int(x1 * factor), int(y1 * factor)), SUPPORTED_BOX if supported else OTHER_BOX, 2 if supported else 1)
    rows, cols = u_hw.shape
    step_y, step_x = size / rows, size / cols
    magnitude = np.hypot(u_hw, v_hw)
    strongest = float(magnitude.max()) if magnitude.size else 0.0
    if strongest <= 0:
        return picture
    gain = arrow_gain if arrow_gain is not None else 2.0 * min(step_x, step_y) / strongest
    arrows = []
    for r in range(rows):
        for c in range(cols):
            if magnitude[r, c] < min_fraction * strongest or magnitude[r, c] * gain < 2.0:
                continue
            start = (int((c + 0.5) * step_x), int((r + 0.5) * step_y))
            end = (int(round(start[0] + float(u_hw[r, c]) * gain)), int(round(start[1] + float(v_hw[r, c]) * gain)))
            arrows.append((start, end))
    thickness = max(1, size // 200)
    for colour, width in ((ARROW_OUTLINE, thickness + 2), (ARROW, thickness)):
        for start, end in arrows:
            cv2.arrowedLine(picture, start, end, colour, width, cv2.LINE_AA, tipLength=0.35)
    return picture
