"""The charts of the Uni-MER report, drawn with OpenCV (BGR uint8 arrays) rather than
matplotlib, whose import and first figure would cost more than the rest of the report.

Corpus: support rate per labelled AU, magnitude distributions, rejections by reason.
Per sample: the motion curve with frame numbers, the coded apex and the curve's own estimate.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import cv2
import numpy as np

from mertk.flow.draw import INK, text

GRID = (225, 225, 225)
GREEN, RED, BLUE = (136, 170, 68), (102, 102, 204), (204, 136, 102)  # BGR of #4a8, #c66, #68c
CURVE = (180, 90, 30)
CODED_APEX = (60, 150, 60)
ESTIMATED_APEX = (0, 130, 240)

TITLE, LABEL, TICK = 0.6, 0.5, 0.45  # font scales


Area = tuple[int, int, int, int]  # x0, y0, x1, y1 of the plot inside a canvas


def chart(title: str, width: int = 900, height: int = 340, left: int = 70, bottom: int = 56, top: int = 40, right: int = 20) -> tuple[np.ndarray, Area]:
    """A white canvas with a title; returns it and the plot area."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    if title:
        text(canvas, title, (width // 2, 16), TITLE, align="centre")
    return canvas, (left, top, width - right, height - bottom)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high] with about `count` steps."""
    span = max(high - low, 1e-9)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def y_axis(canvas: np.ndarray, area: Area, ticks: Sequence[float], label: str) -> None:
    """Grid lines and labels at `ticks` (the last one is the top of the area), axis lines, label."""
    x0, y0, x1, y1 = area
    low, high = ticks[0], ticks[-1]
    for value in ticks:
        y = int(round(y1 - (y1 - y0) * (value - low) / (high - low)))
        cv2.line(canvas, (x0, y), (x1, y), GRID, 1)
        text(canvas, _label(value), (x0 - 6, y), TICK, align="right")
    cv2.line(canvas, (x0, y0), (x0, y1), INK, 1)
    cv2.line(canvas, (x0, y1), (x1, y1), INK, 1)
    text(canvas, label, (6, y0 - 22), LABEL)


def legend(canvas: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int]]], right: int, top: int, width: int = 200) -> None:
    for i, (name, colour) in enumerate(entries):
        y = top + 10 + 20 * i
        cv2.rectangle(canvas, (right - width, y - 6), (right - width + 14, y + 6), colour, -1)
        text(canvas, name, (right - width + 22, y), TICK)


def support_chart(per_au: dict[int, list[bool]]) -> np.ndarray:
    canvas, area = chart("Dual-constraint support rate per labelled AU (primary region, per side)")
    x0, y0, x1, y1 = area
    y_axis(canvas, area, [0, 20, 40, 60, 80, 100], "supported (%)")
    aus = sorted(per_au)
    slot = (x1 - x0) / max(len(aus), 1)
    for i, au in enumerate(aus):
        rate = 100.0 * float(np.mean(per_au[au]))
        left, right = int(x0 + slot * (i + 0.15)), int(x0 + slot * (i + 0.85))
        cv2.rectangle(canvas, (left, int(y1 - (y1 - y0) * rate / 100.0)), (right, y1 - 1), GREEN, -1)
        centre = int(x0 + slot * (i + 0.5))
        text(canvas, f"AU{au}", (centre, y1 + 14), LABEL, align="centre")
        text(canvas, f"n={len(per_au[au])}", (centre, y1 + 34), TICK, align="centre")
    return canvas


def histogram_chart(series: Sequence[tuple[str, Sequence[float], tuple[int, int, int]]], edges: np.ndarray) -> np.ndarray:
    canvas, area = chart("Magnitude of labelled AU regions and of unlabelled motion")
    x0, y0, x1, y1 = area
    counts = [np.histogram(values, bins=edges)[0] for _, values, _ in series]
    ticks = nice_ticks(0, max(1, max(int(c.max()) for c in counts if c.size)))
    ticks = [t for t in ticks if t == int(t)] or [0, 1]  # counts: whole numbers
    top = ticks[-1]
    y_axis(canvas, area, ticks, "count")
    bin_width = (x1 - x0) / (len(edges) - 1)
    for (_, _, colour), count in zip(series, counts):
        layer = canvas.copy()
        for i, n in enumerate(count):
            if n:
                cv2.rectangle(layer, (int(x0 + i * bin_width), int(y1 - (y1 - y0) * n / top)), (int(x0 + (i + 1) * bin_width) - 1, y1 - 1), colour, -1)
        cv2.addWeighted(layer, 0.7, canvas, 0.3, 0, dst=canvas)
    for value in nice_ticks(edges[0], edges[-1], 8):
        if value <= edges[-1]:
            x = int(x0 + (value - edges[0]) / (edges[-1] - edges[0]) * (x1 - x0))
            cv2.line(canvas, (x, y1), (x, y1 + 4), INK, 1)
            text(canvas, _label(value), (x, y1 + 14), TICK, align="centre")
    text(canvas, "region motion (% of inter-ocular distance)", ((x0 + x1) // 2, y1 + 38), LABEL, align="centre")
    legend(canvas, [(name, colour) for name, _, colour in series], x1, y0)
    return canvas


def rejection_chart(kinds: Counter) -> np.ndarray:
    names = sorted(kinds)
    canvas, area = chart("Rejections by reason", height=90 + 34 * len(names), left=230, bottom=40)
    x0, y0, x1, y1 = area
    most = max(kinds.values())
    row = (y1 - y0) / len(names)
    for i, name in enumerate(names):
        y_top, y_bottom = int(y0 + row * (i + 0.15)), int(y0 + row * (i + 0.85))
        end = int(x0 + (x1 - x0 - 50) * kinds[name] / most)
        cv2.rectangle(canvas, (x0, y_top), (end, y_bottom), RED, -1)
        text(canvas, name, (x0 - 8, (y_top + y_bottom) // 2), LABEL, align="right")
        text(canvas, str(kinds[name]), (end + 8, (y_top + y_bottom) // 2), LABEL)
    cv2.line(canvas, (x0, y0), (x0, y1), INK, 1)
    text(canvas, "rejected inputs", ((x0 + x1) // 2, y1 + 20), LABEL, align="centre")
    return canvas


def _dashed_vertical(canvas: np.ndarray, x: int, y0: int, y1: int, colour, dash: int = 6) -> None:
    for y in range(y0, y1, 2 * dash):
        cv2.line(canvas, (x, y), (x, min(y + dash, y1)), colour, 2)


def motion_curve_chart(
    frames: Sequence[int],
    values: Sequence[float],
    onset: int,
    offset: int,
    coded_apex: int | None,
    estimated_apex: int | None,
    width: int = 440,
    height: int = 224,
) -> np.ndarray:
    """The onset->t motion curve over frame numbers (onset to offset), in % IOD, with the coded
    apex (solid green) and the apex the curve puts forward (dashed orange: the estimate where
    the sheet has none, else the curve's peak) marked and named."""
    canvas, area = chart("", width, height, left=56, bottom=50, top=48, right=16)
    x0, y0, x1, y1 = area
    y_ticks = nice_ticks(0.0, max(max(values, default=0.0), 1e-3), 4)
    y_axis(canvas, area, y_ticks, "% IOD")
    first, last = min([onset, *frames]), max([offset, *frames])
    span = max(last - first, 1)

    def x_of(frame: float) -> int:
        return int(round(x0 + (frame - first) / span * (x1 - x0)))

    def y_of(value: float) -> int:
        return int(round(y1 - (y1 - y0) * value / y_ticks[-1]))

    for frame in nice_ticks(first, last, 6):
        if first <= frame <= last:
            cv2.line(canvas, (x_of(frame), y1), (x_of(frame), y1 + 4), INK, 1)
            text(canvas, _label(frame), (x_of(frame), y1 + 14), TICK, align="centre")
    text(canvas, "frame", ((x0 + x1) // 2, y1 + 36), LABEL, align="centre")
    entries = []
    if coded_apex is not None:
        cv2.line(canvas, (x_of(coded_apex), y0), (x_of(coded_apex), y1), CODED_APEX, 2)
        entries.append((f"coded apex {coded_apex}", CODED_APEX))
    if estimated_apex is not None:
        _dashed_vertical(canvas, x_of(estimated_apex), y0, y1, ESTIMATED_APEX)
        entries.append((f"{'estimated apex' if coded_apex is None else 'curve peak'} {estimated_apex}", ESTIMATED_APEX))
    if len(frames) >= 2:
        points = np.array([[x_of(f), y_of(v)] for f, v in zip(frames, values)], np.int32)
        cv2.polylines(canvas, [points], False, CURVE, 2, cv2.LINE_AA)
        for point in points:
            cv2.circle(canvas, (int(point[0]), int(point[1])), 3, CURVE, -1, cv2.LINE_AA)
    for i, (name, colour) in enumerate(entries):
        x = x0 + 10 + 200 * i
        cv2.line(canvas, (x, 14), (x + 18, 14), colour, 3)
        text(canvas, name, (x + 24, 14), TICK)
    return canvas
