"""The pseudo-label quality report: terminal table and self-contained HTML page."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES
from mertk.report.html import img, png_bytes, table, write_page

METRIC_ROWS = (
    ("segment", "audio", "Segment audio F1"),
    ("segment", "visual", "Segment visual F1"),
    ("segment", "audio_visual", "Segment audio-visual F1"),
    ("segment", "type", "Segment Type@AV"),
    ("segment", "event", "Segment Event@AV"),
    ("event", "audio", "Event audio F1"),
    ("event", "visual", "Event visual F1"),
    ("event", "audio_visual", "Event audio-visual F1"),
    ("event", "type", "Event Type@AV"),
    ("event", "event", "Event Event@AV"),
)


def score_rows(split_scores: dict[str, Any]) -> list[list[object]]:
    rows = []
    for level, key, title in METRIC_ROWS:
        pseudo = split_scores["pseudo"][level][key]
        naive = split_scores["naive"][level][key]
        rows.append([title, round(pseudo, 2), round(naive, 2), round(pseudo - naive, 2)])
    return rows


def print_score_table(scores: dict[str, Any], target: dict[str, Any] | None) -> None:
    from rich.table import Table

    from mertk.console import console

    for split, split_scores in scores.items():
        grid = Table(title=f"pseudo-labels vs naive baseline: {split} ({split_scores['videos']} videos, truth {split_scores['truth']})")
        for header in ("metric", "pseudo-labels", "naive", "gain"):
            grid.add_column(header, justify="right" if header != "metric" else "left")
        for row in score_rows(split_scores):
            grid.add_row(row[0], f"{row[1]:.2f}", f"{row[2]:.2f}", f"{row[3]:+.2f}")
        console.print(grid)
    if target and "knn" in target:
        seg_knn, seg_chance = target["knn"]["segment"], target["chance"]["segment"]
        console.print(
            f"target ({target['videos']} videos): k-NN segment audio F1 {seg_knn['audio']:.2f} "
            f"(chance {seg_chance['audio']:.2f}), visual {seg_knn['visual']:.2f} (chance {seg_chance['visual']:.2f}), "
            f"Type@AV {seg_knn['type']:.2f} (chance {seg_chance['type']:.2f})"
        )
    if not scores:
        console.print("no split with dense labels: no quality table (the eval CSVs or ground_truth_*.csv are needed)")


# Figures are drawn with OpenCV on numpy canvases: importing and rendering matplotlib is a fixed
# cost per run as large as labelling a small corpus.
_WHITE, _BLACK, _GREY, _LIGHT = (255, 255, 255), (40, 40, 40), (187, 187, 187), (225, 225, 225)
_BLUE, _GREEN = (175, 117, 59), (44, 160, 44)  # BGR
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, colour=_BLACK) -> None:
    import cv2

    cv2.putText(canvas, text, (int(x), int(y)), _FONT, scale, colour, 1, cv2.LINE_AA)


def _vertical_labels(names: list[str], height: int, pitch: float, scale: float) -> np.ndarray:
    """A (height, len * pitch) strip with the names written bottom-up, one per `pitch` pixels."""
    import cv2

    strip = np.full((int(pitch * len(names)) + 1, height, 3), 255, dtype=np.uint8)  # drawn sideways
    for index, name in enumerate(names):
        _text(strip, name, height - 6 - _text_width(name, scale), int((index + 0.5) * pitch) + 5, scale)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _text_width(text: str, scale: float) -> int:
    import cv2

    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _absent_mark(canvas: np.ndarray, x0: int, x1: int, bottom: int, height: int) -> None:
    """A class with no true and no predicted segment (F1 undefined): a hatched stub, unlike a bar of 0."""
    import cv2

    top = bottom - height
    cv2.rectangle(canvas, (x0, top), (x1, bottom), _GREY, 1)
    for offset in range(-height, x1 - x0, 5):
        cv2.line(canvas, (x0 + max(offset, 0), top + max(-offset, 0)), (x0 + min(offset + height, x1 - x0), top + min(x1 - x0 - offset, height)), _GREY, 1)


def _per_class_figure(scores: dict[str, Any]) -> bytes:
    """Per-class segment F1, naive beside pseudo-labels: one row of panels per split, one column per modality.

    A class absent from the split (no true and no predicted segment, so no F1) is a hatched stub,
    not a bar of height 0 (which is an F1 of 0: segments predicted or missed, none right).
    """
    import cv2

    splits = list(scores)
    names = [name.replace("_", " ") for name in LLP_CLASSES]
    label_scale, tick_scale = 0.5, 0.45
    pitch = 30
    panel_w, panel_h, left, gap, title_h, legend_h = pitch * len(names), 240, 70, 40, 34, 56
    label_h = max(_text_width(name, label_scale) for name in names) + 14
    row_h = title_h + panel_h + label_h + 30
    width = 2 * (left + panel_w) + gap + 20
    height = legend_h + len(splits) * row_h
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    _text(canvas, "Per-class segment F1 (%) of each split and modality", 10, 22, 0.6)
    legend_x = 10
    for colour, words in ((_GREY, "naive: the weak label on every segment"), (_BLUE, "pseudo-labels")):
        cv2.rectangle(canvas, (legend_x, 34), (legend_x + 16, 48), colour, -1)
        _text(canvas, words, legend_x + 22, 46, tick_scale)
        legend_x += 22 + _text_width(words, tick_scale) + 24
    _absent_mark(canvas, legend_x, legend_x + 16, 48, 14)
    _text(canvas, "class absent from the split (no true, no predicted segment): no F1", legend_x + 22, 46, tick_scale)
    labels = _vertical_labels(names, label_h, pitch, label_scale)
    y_title = np.full((left - 30, panel_h, 3), 255, dtype=np.uint8)
    _text(y_title, "segment F1 (%)", (panel_h - _text_width("segment F1 (%)", tick_scale)) // 2, 16, tick_scale)
    y_title = cv2.rotate(y_title, cv2.ROTATE_90_COUNTERCLOCKWISE)
    for row, split in enumerate(splits):
        y0 = legend_h + row * row_h + title_h
        for column, modality in enumerate(MODALITIES):
            x0 = column * (left + panel_w + gap) + left + 10
            _text(canvas, f"{split}: {modality}", x0, y0 - 10, 0.55)
            canvas[y0 : y0 + panel_h, x0 - left : x0 - left + y_title.shape[1]] = y_title
            for tick in (0, 25, 50, 75, 100):
                y = y0 + panel_h - int(panel_h * tick / 100)
                cv2.line(canvas, (x0, y), (x0 + panel_w, y), _LIGHT, 1)
                _text(canvas, str(tick), x0 - 8 - _text_width(str(tick), tick_scale), y + 5, tick_scale)
            per_class = scores[split]["per_class_f1"][modality]
            naive = np.array(per_class["naive"], dtype=float)
            pseudo = np.array(per_class["pseudo"], dtype=float)
            bottom = y0 + panel_h
            for index in range(len(names)):
                x = x0 + index * pitch
                for offset, value, colour in ((0.12, naive[index], _GREY), (0.5, pseudo[index], _BLUE)):
                    bar_x0, bar_x1 = int(x + offset * pitch), int(x + (offset + 0.36) * pitch)
                    if not np.isfinite(value):
                        _absent_mark(canvas, bar_x0, bar_x1, bottom, 14)
                        continue
                    # at least 2 pixels: an F1 of 0 shows as a flat bar, visibly not absent
                    bar_top = min(bottom - 2, bottom - int(round(panel_h * min(max(value, 0.0), 1.0))))
                    cv2.rectangle(canvas, (bar_x0, bar_top), (bar_x1, bottom), colour, -1)
            cv2.rectangle(canvas, (x0, y0), (x0 + panel_w, bottom), _BLACK, 1)
            canvas[bottom + 4 : bottom + 4 + label_h, x0 : x0 + labels.shape[1]] = labels[:, : panel_w + 1]
            _text(canvas, "class", x0 + panel_w // 2 - 20, bottom + label_h + 22, tick_scale)
    return png_bytes(canvas)


def _timeline_figure(videos: list[tuple[str, tuple, tuple, np.ndarray]]) -> bytes:
    """One row per video, one column per modality: true segments above, migrated below."""
    import cv2

    rows_per_video = []
    for _, _, truth, weak_c in videos:
        rows_per_video.append(sorted(set(np.flatnonzero(weak_c)) | set(np.flatnonzero(truth[0].any(1) | truth[1].any(1)))))
    names_w, cell, row_h, title_h = 150, 30, 22, 22
    panel_w = names_w + 10 * cell
    width = 2 * panel_w + 30
    height = 30 + sum(title_h + max(len(c), 1) * row_h + 18 for c in rows_per_video)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    _text(canvas, "true segments (green, upper half) vs migrated (blue, lower half), seconds 0-10", 10, 18, 0.45)
    y0 = 30
    for (filename, pred, truth, _), classes in zip(videos, rows_per_video):
        for column, (modality, p, t) in enumerate(zip(MODALITIES, pred, truth)):
            x0 = 10 + column * (panel_w + 10)
            _text(canvas, f"{filename} {modality}", x0, y0 + 15, 0.4)
            grid_x = x0 + names_w
            for row, c in enumerate(classes):
                y = y0 + title_h + row * row_h
                _text(canvas, LLP_CLASSES[c][:22], x0, y + 15, 0.35)
                for second in range(10):
                    x = grid_x + second * cell
                    cv2.rectangle(canvas, (x, y), (x + cell, y + row_h), _LIGHT, 1)
                    if t[c][second]:
                        cv2.rectangle(canvas, (x + 1, y + 2), (x + cell - 1, y + row_h // 2 - 1), _GREEN, -1)
                    if p[c][second]:
                        cv2.rectangle(canvas, (x + 1, y + row_h // 2 + 1), (x + cell - 1, y + row_h - 2), _BLUE, -1)
            for second in range(0, 11, 5):
                _text(canvas, str(second), grid_x + second * cell - 3, y0 + title_h + max(len(classes), 1) * row_h + 13, 0.35)
        y0 += title_h + max(len(classes), 1) * row_h + 18
    return png_bytes(canvas)


def write_report(
    path: Path,
    config: Any,
    manifest: Any,
    scores: dict[str, Any],
    matrices: dict[str, Any],
    target: dict[str, Any] | None,
    timelines: int = 4,
) -> Path:
    sections = [
        "<div class='card'><p>Segment pseudo-labels migrated from the LLP weak labels by similarity to class "
        f"anchors (features: <b>{html.escape(config.features)}</b>, calibration: <b>{html.escape(config.calibrate)}</b>). "
        f"Videos written: {manifest.inputs_written}; rejected: {manifest.inputs_rejected} (see _manifest.json). "
        "The naive baseline copies each video's weak label to every segment of both modalities.</p></div>"
    ]
    for split, split_scores in scores.items():
        sections.append(f"<h2>{html.escape(split)}: {split_scores['videos']} videos (truth: {html.escape(split_scores['truth'])})</h2>")
        sections.append(table(["metric", "pseudo-labels", "naive", "gain"], score_rows(split_scores)))
    if scores:
        sections.append("<h2>Per-class segment F1</h2>")
        sections.append(img(_per_class_figure(scores), "per-class segment F1 per split"))
        # Timelines of a few videos of one split (test when it has dense labels).
        split = "test" if "test" in matrices else list(matrices)[-1]
        data = matrices[split]
        shown = min(timelines, len(data["filenames"]))
        picked = [
            (
                data["filenames"][row],
                (data["pred"][0][row], data["pred"][1][row]),
                (data["truth"][0][row], data["truth"][1][row]),
                data["weak"][row],
            )
            for row in np.linspace(0, len(data["filenames"]) - 1, shown).astype(int)
        ]
        sections.append(f"<h2>Timelines of {len(picked)} {html.escape(split)} videos</h2>")
        sections.append(img(_timeline_figure(picked), f"timelines of {len(picked)} {split} videos"))
    if target:
        sections.append("<h2>Target corpus (k-nearest-neighbour migration)</h2>")
        if "knn" in target:
            rows = [
                [title, round(target["knn"][level][key], 2), round(target["chance"][level][key], 2)]
                for level, key, title in METRIC_ROWS
            ]
            sections.append(table(["metric", "k-NN migration", "chance (predictions of permuted videos)"], rows))
        else:
            sections.append(f"<p>{target['videos']} videos labelled; the target has no dense truth to score against.</p>")
    if not scores:
        sections.append("<p class='muted'>No split with dense labels: nothing to score.</p>")
    rules = manifest.summary.get("threshold_rules", {}) if manifest.summary else {}
    thresholds = manifest.summary.get("thresholds", {}) if manifest.summary else {}
    if thresholds:
        sections.append("<h2>Thresholds (cosine similarity)</h2>")
        sections.append(
            table(
                ["class", "audio", "audio rule", "visual", "visual rule"],
                [
                    [name, thresholds["audio"][name], rules.get("audio", {}).get(name), thresholds["visual"][name], rules.get("visual", {}).get(name)]
                    for name in LLP_CLASSES
                ],
            )
        )
    return write_page(path, "mertk migrate-labels: pseudo-label quality", sections)
