"""OUT/unimer/_report.html: one self-contained page to look at what build-unimer made.

Corpus section: counts, intensity bins, support rate per labelled AU, magnitude distributions,
rejections by reason. Per sample: the apex face with region boxes (supported ones green) and the
flow drawn as arrows, the flow colour picture, the motion curve, the caption, the AU evidence.
"""
from __future__ import annotations

import base64
import html
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from mertk.captions import IntensityBins
from mertk.flow.draw import face_with_motion, flow_picture
from mertk.shards.layout import REPORT_NAME
from mertk.report.html import img, png_bytes, table, write_page
from mertk.shards.manifest import Manifest
from mertk.unimer.measure import SampleMeasurement
from mertk.unimer.rows import sample_caption

PICTURE_SIZE = 224


# Charts are drawn with OpenCV rather than matplotlib, whose import and first figure cost more
# than the rest of the report.
_INK, _GRID = (60, 60, 60), (225, 225, 225)
_GREEN, _RED, _BLUE = (136, 170, 68), (102, 102, 204), (204, 136, 102)  # BGR of #4a8, #c66, #68c
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4, colour=_INK, align: str = "left") -> None:
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = origin
    if align == "centre":
        x -= width // 2
    elif align == "right":
        x -= width
    cv2.putText(canvas, text, (int(x), int(y + height // 2)), _FONT, scale, colour, 1, cv2.LINE_AA)


def _chart(title: str, width: int = 800, height: int = 300, left: int = 60, bottom: int = 44) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A white canvas with a title; returns it and the plot area (x0, y0, x1, y1)."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    _text(canvas, title, (width // 2, 12), 0.45, align="centre")
    return canvas, (left, 28, width - 16, height - bottom)


def _y_axis(canvas: np.ndarray, area: tuple[int, int, int, int], top: float, label: str, ticks: int = 5) -> None:
    x0, y0, x1, y1 = area
    for i in range(ticks + 1):
        value = top * i / ticks
        y = int(y1 - (y1 - y0) * i / ticks)
        cv2.line(canvas, (x0, y), (x1, y), _GRID, 1)
        _text(canvas, f"{value:g}" if value == int(value) else f"{value:.1f}", (x0 - 4, y), align="right")
    cv2.line(canvas, (x0, y0), (x0, y1), _INK, 1)
    cv2.line(canvas, (x0, y1), (x1, y1), _INK, 1)
    _text(canvas, label, (4, y0 - 14))


def _support_chart(per_au: dict[int, list[bool]]) -> bytes:
    canvas, area = _chart("Dual-constraint support rate per labelled AU (primary region, per side)")
    x0, y0, x1, y1 = area
    _y_axis(canvas, area, 100.0, "supported (%)")
    aus = sorted(per_au)
    slot = (x1 - x0) / max(len(aus), 1)
    for i, au in enumerate(aus):
        rate = 100.0 * float(np.mean(per_au[au]))
        left, right = int(x0 + slot * (i + 0.15)), int(x0 + slot * (i + 0.85))
        cv2.rectangle(canvas, (left, int(y1 - (y1 - y0) * rate / 100.0)), (right, y1 - 1), _GREEN, -1)
        centre = int(x0 + slot * (i + 0.5))
        _text(canvas, f"AU{au}", (centre, y1 + 10), 0.35, align="centre")
        _text(canvas, f"n={len(per_au[au])}", (centre, y1 + 24), 0.3, align="centre")
    return png_bytes(canvas)


def _histogram_chart(series: Sequence[tuple[str, Sequence[float], tuple[int, int, int]]], edges: np.ndarray) -> bytes:
    canvas, area = _chart("Magnitude of labelled AU regions and of unlabelled motion")
    x0, y0, x1, y1 = area
    counts = [np.histogram(values, bins=edges)[0] for _, values, _ in series]
    ticks = 5
    top = -(-max(1, max(int(c.max()) for c in counts if c.size)) // ticks) * ticks  # round up: whole-number ticks
    _y_axis(canvas, area, float(top), "count", ticks=ticks)
    bin_width = (x1 - x0) / (len(edges) - 1)
    for (name, _, colour), count in zip(series, counts):
        layer = canvas.copy()
        for i, n in enumerate(count):
            if n:
                cv2.rectangle(layer, (int(x0 + i * bin_width), int(y1 - (y1 - y0) * n / top)), (int(x0 + (i + 1) * bin_width) - 1, y1 - 1), colour, -1)
        cv2.addWeighted(layer, 0.7, canvas, 0.3, 0, dst=canvas)
    for value in np.linspace(edges[0], edges[-1], 6):
        x = int(x0 + (value - edges[0]) / (edges[-1] - edges[0]) * (x1 - x0))
        _text(canvas, f"{value:.1f}", (x, y1 + 10), 0.35, align="centre")
    _text(canvas, "region motion (% of inter-ocular distance)", ((x0 + x1) // 2, y1 + 28), 0.4, align="centre")
    for i, (name, _, colour) in enumerate(series):
        cv2.rectangle(canvas, (x1 - 170, y0 + 6 + 16 * i), (x1 - 158, y0 + 16 + 16 * i), colour, -1)
        _text(canvas, name, (x1 - 152, y0 + 11 + 16 * i), 0.4)
    return png_bytes(canvas)


def _rejection_chart(kinds: Counter) -> bytes:
    names = sorted(kinds)
    canvas, area = _chart("Rejections by reason", height=70 + 28 * len(names), left=170, bottom=30)
    x0, y0, x1, y1 = area
    top = max(kinds.values())
    row = (y1 - y0) / len(names)
    for i, name in enumerate(names):
        y_top, y_bottom = int(y0 + row * (i + 0.15)), int(y0 + row * (i + 0.85))
        cv2.rectangle(canvas, (x0, y_top), (int(x0 + (x1 - x0 - 40) * kinds[name] / top), y_bottom), _RED, -1)
        _text(canvas, name, (x0 - 6, (y_top + y_bottom) // 2), align="right")
        _text(canvas, str(kinds[name]), (int(x0 + (x1 - x0 - 40) * kinds[name] / top) + 6, (y_top + y_bottom) // 2))
    cv2.line(canvas, (x0, y0), (x0, y1), _INK, 1)
    _text(canvas, "rejected inputs", ((x0 + x1) // 2, y1 + 14), align="centre")
    return png_bytes(canvas)


def _corpus_figures(measurements: Sequence, manifest: Manifest) -> list[str]:
    sections = []
    per_au: dict[int, list[bool]] = defaultdict(list)
    supported_mag, unsupported_mag = [], []
    for m in measurements:
        for e in m.evidence:
            if e.primary:
                per_au[e.au].append(e.supported)
                (supported_mag if e.supported else unsupported_mag).append(e.magnitude)
    if per_au:
        sections.append(img(_support_chart(per_au), "support rate per AU"))
    unlabelled = [u.magnitude for m in measurements for u in m.unlabelled]
    edges = np.linspace(0, max([5.0, *supported_mag, *unsupported_mag, *unlabelled]), 41)
    series = [("supported", supported_mag, _GREEN), ("not supported", unsupported_mag, _RED)]
    if unlabelled:
        series.append(("unlabelled motion", unlabelled, _BLUE))
    sections.append(img(_histogram_chart(series, edges), "magnitude distributions"))
    if manifest.rejections:
        sections.append(img(_rejection_chart(Counter(_reason_kind(r["reason"]) for r in manifest.rejections)), "rejections by reason"))
    return sections


def _reason_kind(reason: str) -> str:
    text = reason.split(": ", 1)[-1]
    for pattern, kind in (
        (r"not a readable JPEG", "unreadable frame"),
        (r"missing", "missing frames"),
        (r"frame order", "wrong frame order"),
        (r"unknown emotion", "unknown emotion"),
        (r"not an Action Unit", "unknown AU token"),
        (r"leave the corpus", "path leaves the corpus"),
        (r"no usable face", "no usable face"),
        (r"repeats", "duplicate row"),
    ):
        if re.search(pattern, text):
            return kind
    return "other"


def _curve_png(frames: Sequence[int], values: Sequence[float], apex: int, width: int = 224, height: int = 80) -> bytes:
    """A small sparkline of the motion curve with the apex marked (drawn with OpenCV: fast)."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    if len(frames) >= 2:
        f0, f1 = frames[0], frames[-1]
        top = max(max(values), 1e-6)
        points = np.array([[int(4 + (f - f0) / max(f1 - f0, 1) * (width - 8)), int(height - 6 - v / top * (height - 14))] for f, v in zip(frames, values)], np.int32)
        x_apex = int(4 + (apex - f0) / max(f1 - f0, 1) * (width - 8))
        cv2.line(canvas, (x_apex, 0), (x_apex, height), (60, 160, 60), 1)
        cv2.polylines(canvas, [points], False, (200, 80, 40), 1, cv2.LINE_AA)
        for point in points:
            cv2.circle(canvas, tuple(int(c) for c in point), 2, (200, 80, 40), -1)
    return png_bytes(canvas)


def _jpeg_img(image, alt: str) -> str:
    """Per-sample photos as JPEG data URIs: a tenth of the PNG size, so 255 cards stay a few MB."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    uri = "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _sample_card(m, row: dict, crop_size: int) -> str:
    face_hw = cv2.imdecode(np.frombuffer(m.apex_face_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    flow_3hw = m.apex_flow_3hw
    # arrows on a 14 x 14 grid (2x2 means of the 28 x 28 field)
    u = flow_3hw[0].reshape(14, 2, 14, 2).mean(axis=(1, 3))
    v = flow_3hw[1].reshape(14, 2, 14, 2).mean(axis=(1, 3))
    supported = [(e.region, e.side) for e in m.evidence if e.supported]
    face_picture = face_with_motion(face_hw, u, v, m.region_boxes_crop, 1.0 / crop_size, supported, size=PICTURE_SIZE, arrow_gain=6.0)
    colour_png = png_bytes(flow_picture(flow_3hw[0], flow_3hw[1], size=PICTURE_SIZE // 2))
    curve = _curve_png(m.curve_frames, m.curve_values, m.apex_frame)
    s = m.sample
    apex_note = " (estimated)" if m.apex_estimated else ""
    evidence_rows = [(f"AU{e.au}", e.side or "both", e.region, e.magnitude, e.score, "yes" if e.supported else "no") for e in m.evidence]
    unlabelled_rows = [(u.region, u.side or "", u.magnitude, f"AU{u.au}" if u.au else "none fits", u.score) for u in m.unlabelled]
    parts = [
        f"<div class='card'><h3>{html.escape(s.sample_id)} — {html.escape(s.emotion)} — AUs {html.escape(s.au_text or '(none)')}</h3>",
        f"<p class='muted'>onset {s.onset_frame}, apex {m.apex_frame}{apex_note}, offset {s.offset_frame}; "
        f"face {'detected' if m.face_detected else 'NOT detected (whole frame)'}; IOD {m.inter_ocular_px:.1f} px</p>",
        _jpeg_img(face_picture, f"apex face {s.sample_id}"),
        " ",
        img(colour_png, f"flow colour {s.sample_id}"),
        " ",
        img(curve, f"motion curve {s.sample_id}"),
        f"<p><b>Caption:</b> {html.escape(row['caption'])}</p>",
        table(["AU", "side", "region", "magnitude %IOD", "score", "supported"], evidence_rows) if evidence_rows else "<p class='muted'>no labelled AU with a FACS motion</p>",
    ]
    if unlabelled_rows:
        parts.append("<p>Unlabelled motion:</p>" + table(["region", "side", "magnitude %IOD", "best-fitting AU", "score"], unlabelled_rows))
    parts.append("</div>")
    return "".join(parts)


def draw_sample_cards(measurements: Sequence[SampleMeasurement], bins: IntensityBins, crop_size: int) -> list[str]:
    """The report's per-sample cards (HTML with embedded pictures), captions as in the shards."""
    return [_sample_card(m, {"caption": sample_caption(m, bins)}, crop_size) for m in measurements]


def write_unimer_report(
    out_dir: Path,
    measurements: Sequence[SampleMeasurement],
    manifest: Manifest,
    bins: IntensityBins,
    cards: Iterable[list[str]] | None = None,
) -> Path:
    """OUT/unimer/_report.html. `cards`: the sample cards' HTML, in sample order, in parts (drawn
    elsewhere, e.g. by a pool while the shards were written); without them they are drawn here."""
    crop_size = int(manifest.parameters.get("crop_size", 224))
    summary = manifest.summary
    overview = table(
        ["inputs seen", "written", "rejected", "faces not detected", "apex estimated", "labelled AU rows supported", "unlabelled motions", "intensity bin edges (%IOD)"],
        [[
            manifest.inputs_seen,
            manifest.inputs_written,
            manifest.inputs_rejected,
            summary.get("faces_not_detected"),
            summary.get("apex_estimated"),
            f"{summary.get('labelled_au_rows_supported')} / {summary.get('labelled_au_rows')}",
            summary.get("unlabelled_motions"),
            ", ".join(f"{e:.2f}" for e in bins.edges) + f" ({'calibrated on ' + str(bins.calibrated_on) if bins.calibrated_on else 'fallback'})",
        ]],
    )
    sections = ["<h2>Corpus</h2>", overview, *_corpus_figures(measurements, manifest)]
    if manifest.rejections:
        sections.append("<h2>Rejections</h2>" + table(["input", "reason"], [(r["input"], r["reason"]) for r in manifest.rejections]))
    sections.append("<h2>Samples</h2><p class='muted'>Boxes: facial regions (green: a labelled AU the flow supports). Arrows: onset→apex flow. Colour picture: hue = direction, brightness = magnitude. Curve: onset→t motion, green line = apex.</p>")
    sections += [card for part in cards for card in part] if cards is not None else draw_sample_cards(measurements, bins, crop_size)
    return write_page(out_dir / REPORT_NAME, "Uni-MER build report", sections)
