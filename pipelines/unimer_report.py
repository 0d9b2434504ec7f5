"""OUT/unimer/report.html: one self-contained page to look at what build-unimer made.

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
from typing import Sequence

import cv2
import numpy as np

from mertk.captions import IntensityBins
from mertk.flow.draw import face_with_motion, flow_picture, png_bytes
from mertk.report.html import figure_png, img, table, write_page
from mertk.shards.io import read_shards
from mertk.shards.manifest import Manifest

REPORT_NAME = "report.html"
PICTURE_SIZE = 224


def _corpus_figures(measurements: Sequence, manifest: Manifest) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    per_au: dict[int, list[bool]] = defaultdict(list)
    supported_mag, unsupported_mag = [], []
    for m in measurements:
        for e in m.evidence:
            if e.primary:
                per_au[e.au].append(e.supported)
                (supported_mag if e.supported else unsupported_mag).append(e.magnitude)
    if per_au:
        aus = sorted(per_au)
        rates = [100.0 * np.mean(per_au[a]) for a in aus]
        figure, axis = plt.subplots(figsize=(8, 3))
        axis.bar([f"AU{a}\n(n={len(per_au[a])})" for a in aus], rates, color="#4a8")
        axis.set_ylabel("supported (%)")
        axis.set_ylim(0, 100)
        axis.set_title("Dual-constraint support rate per labelled AU (primary region, per side)")
        sections.append(img(figure_png(figure), "support rate per AU"))
    figure, axis = plt.subplots(figsize=(8, 3))
    bins = np.linspace(0, max([5.0, *supported_mag, *unsupported_mag]), 40)
    axis.hist(supported_mag, bins=bins, alpha=0.7, label="supported", color="#4a8")
    axis.hist(unsupported_mag, bins=bins, alpha=0.7, label="not supported", color="#c66")
    unlabelled = [u.magnitude for m in measurements for u in m.unlabelled]
    if unlabelled:
        axis.hist(unlabelled, bins=bins, alpha=0.6, label="unlabelled motion", color="#68c")
    axis.set_xlabel("region motion (% of inter-ocular distance)")
    axis.set_ylabel("count")
    axis.legend()
    axis.set_title("Magnitude of labelled AU regions and of unlabelled motion")
    sections.append(img(figure_png(figure), "magnitude distributions"))
    if manifest.rejections:
        kinds = Counter(_reason_kind(r["reason"]) for r in manifest.rejections)
        figure, axis = plt.subplots(figsize=(8, 0.5 + 0.4 * len(kinds)))
        names = sorted(kinds)
        axis.barh(names, [kinds[n] for n in names], color="#c66")
        axis.set_xlabel("rejected inputs")
        axis.set_title("Rejections by reason")
        sections.append(img(figure_png(figure), "rejections by reason"))
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


def write_unimer_report(out_dir: Path, measurements: Sequence, manifest: Manifest, bins: IntensityBins) -> Path:
    rows_by_id = {}
    if manifest.rows_written:
        shard_rows = read_shards(out_dir, columns=["sample_id", "caption"]).to_pylist()
        rows_by_id = {r["sample_id"]: r for r in shard_rows}
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
    sections += [_sample_card(m, rows_by_id.get(m.sample.sample_id, {"caption": ""}), crop_size) for m in measurements]
    return write_page(out_dir / "report.html", "Uni-MER build report", sections)
