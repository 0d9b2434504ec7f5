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
from mertk.flow.draw import colour_key, colour_scale, face_with_motion, flow_picture
from mertk.shards.layout import REPORT_NAME
from mertk.report.html import img, png_bytes, table, write_page
from mertk.shards.manifest import Manifest
from mertk.unimer.charts import BLUE, GREEN, RED, histogram_chart, motion_curve_chart, rejection_chart, support_chart
from mertk.unimer.measure import SampleMeasurement
from mertk.unimer.rows import sample_caption

FACE_PICTURE_SIZE = 320
COLOUR_PICTURE_SIZE = 224
_STYLE = (
    "<style>.pictures{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-end}"
    "figure{margin:0}figcaption{color:#555;font-size:0.9em;margin-top:4px}"
    "img[alt^='flow colour']{image-rendering:pixelated}</style>"
)


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
        sections.append(img(png_bytes(support_chart(per_au)), "support rate per AU"))
    unlabelled = [u.magnitude for m in measurements for u in m.unlabelled]
    largest = max([*supported_mag, *unsupported_mag, *unlabelled], default=1.0)
    edges = np.linspace(0, max(1.0, 1.05 * largest), 41)  # the axis ends where the data do
    series = [("supported", supported_mag, GREEN), ("not supported", unsupported_mag, RED)]
    if unlabelled:
        series.append(("unlabelled motion", unlabelled, BLUE))
    sections.append(img(png_bytes(histogram_chart(series, edges)), "magnitude distributions"))
    if manifest.rejections:
        kinds = Counter(_reason_kind(r["reason"]) for r in manifest.rejections)
        sections.append(img(png_bytes(rejection_chart(kinds)), "rejections by reason"))
    return sections


def _reason_kind(reason: str) -> str:
    text = reason.split(": ", 1)[-1]
    for pattern, kind in (
        (r"not a readable JPEG", "unreadable frame"),
        (r"truncated JPEG", "truncated frame"),
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


def _jpeg_img(image, alt: str) -> str:
    """Per-sample photos as JPEG data URIs: a tenth of the PNG size, so 255 cards stay a few MB."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    uri = "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _sample_card(m: SampleMeasurement, row: dict, crop_size: int) -> str:
    face_hw = cv2.imdecode(np.frombuffer(m.apex_face_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    flow_3hw = m.apex_flow_3hw
    # arrows on a 14 x 14 grid (2x2 means of the 28 x 28 field)
    u = flow_3hw[0].reshape(14, 2, 14, 2).mean(axis=(1, 3))
    v = flow_3hw[1].reshape(14, 2, 14, 2).mean(axis=(1, 3))
    strongest = float(np.hypot(u, v).max())
    supported = [(e.region, e.side) for e in m.evidence if e.supported]
    face_picture = face_with_motion(face_hw, u, v, m.region_boxes_crop, 1.0 / crop_size, supported, size=FACE_PICTURE_SIZE)
    brightest = colour_scale(flow_3hw[0], flow_3hw[1])
    colour_png = png_bytes(flow_picture(flow_3hw[0], flow_3hw[1], brightest))  # 28 x 28: the browser enlarges it
    s = m.sample
    peak = m.curve_frames[int(np.argmax(m.curve_values))] if m.curve_frames else None
    curve = motion_curve_chart(
        m.curve_frames, m.curve_values, s.onset_frame, s.offset_frame,
        coded_apex=None if m.apex_estimated else m.apex_frame,
        estimated_apex=m.apex_frame if m.apex_estimated else peak,
    )
    apex_note = " (estimated)" if m.apex_estimated else ""
    evidence_rows = [(f"AU{e.au}", e.side or "both", e.region, e.magnitude, e.score, "yes" if e.supported else "no") for e in m.evidence]
    unlabelled_rows = [(u.region, u.side or "", u.magnitude, f"AU{u.au}" if u.au else "none fits", u.score) for u in m.unlabelled]
    parts = [
        f"<div class='card'><h3>{html.escape(s.sample_id)} — {html.escape(s.emotion)} — AUs {html.escape(s.au_text or '(none)')}</h3>",
        f"<p class='muted'>onset {s.onset_frame}, apex {m.apex_frame}{apex_note}, offset {s.offset_frame}; "
        f"face {'detected' if m.face_detected else 'NOT detected (whole frame)'}; IOD {m.inter_ocular_px:.1f} px</p>",
        "<div class='pictures'>",
        f"<figure>{_jpeg_img(face_picture, f'apex face {s.sample_id}')}<figcaption>onset→apex flow; longest arrow "
        f"{strongest:.2f} % IOD</figcaption></figure>",
        f"<figure>{img(colour_png, f'flow colour {s.sample_id}', width=COLOUR_PICTURE_SIZE)}<figcaption>onset→apex flow in colour; brightest {brightest:.2f} % IOD</figcaption></figure>",
        f"<figure>{img(png_bytes(curve), f'motion curve {s.sample_id}')}<figcaption>motion of the face regions, onset→frame</figcaption></figure>",
        "</div>",
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
    sections = [_STYLE, "<h2>Corpus</h2>", overview, *_corpus_figures(measurements, manifest)]
    if manifest.rejections:
        sections.append("<h2>Rejections</h2>" + table(["input", "reason"], [(r["input"], r["reason"]) for r in manifest.rejections]))
    sections.append(
        "<h2>Samples</h2><p class='muted'>Face: facial regions (green boxes: a labelled AU that the flow supports; blue: the others) "
        "and the onset→apex flow as arrows (lengthened to be seen; the longest one's motion is under the picture). "
        "Colour picture: hue = direction of motion as on the wheel below, brightness = its size (brightest: the "
        "field's 99th percentile, under the picture). "
        "Curve: motion of the face regions from onset to each frame; solid green = the coded apex, "
        "dashed orange = the apex the curve puts forward (the estimate where the sheet gives '/').</p>"
        + img(png_bytes(colour_key()), "direction wheel: the colour of each direction of motion")
    )
    sections += [card for part in cards for card in part] if cards is not None else draw_sample_cards(measurements, bins, crop_size)
    return write_page(out_dir / REPORT_NAME, "Uni-MER build report", sections)
