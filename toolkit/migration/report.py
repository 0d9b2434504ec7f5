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


# Figures are drawn with OpenCV on numpy canvases: importing and rendering matplotlib took a few
# seconds per run, a fixed cost as large as labelling a small corpus.
_WHITE, _BLACK, _GREY, _LIGHT = (255, 255, 255), (40, 40, 40), (187, 187, 187), (225, 225, 225)
_BLUE, _GREEN = (175, 117, 59), (44, 160, 44)  # BGR
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, colour=_BLACK) -> None:
    import cv2

    cv2.putText(canvas, text, (int(x), int(y)), _FONT, scale, colour, 1, cv2.LINE_AA)


def _vertical_labels(names: list[str], height: int, pitch: float, scale: float = 0.35) -> np.ndarray:
    """A (height, len * pitch) strip with the names written bottom-up, one per `pitch` pixels."""
    import cv2

    strip = np.full((int(pitch * len(names)) + 1, height, 3), 255, dtype=np.uint8)  # drawn sideways
    for index, name in enumerate(names):
        _text(strip, name, 2, int((index + 0.5) * pitch) + 4, scale)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _per_class_figure(scores: dict[str, Any]) -> bytes:
    """Per-class segment F1, pseudo-labels beside naive: one row per split, one column per modality."""
    import cv2

    splits = list(scores)
    panel_w, panel_h, left, top, gap, label_h = 620, 220, 40, 28, 20, 120
    pitch = (panel_w - 10) / len(LLP_CLASSES)
    width = 2 * (left + panel_w) + gap
    height = 30 + len(splits) * (top + panel_h + 10) + label_h
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    _text(canvas, "per-class segment F1 (%): naive, weak label everywhere (grey) vs pseudo-labels (blue)", 10, 18, 0.45)
    for row, split in enumerate(splits):
        y0 = 30 + row * (top + panel_h + 10) + top
        for column, modality in enumerate(MODALITIES):
            x0 = column * (left + panel_w + gap) + left
            _text(canvas, f"{split}: {modality}", x0, y0 - 8, 0.45)
            for tick in (0, 50, 100):
                y = y0 + panel_h - int(panel_h * tick / 100)
                cv2.line(canvas, (x0, y), (x0 + panel_w, y), _LIGHT, 1)
                _text(canvas, str(tick), x0 - 30, y + 4, 0.35)
            per_class = scores[split]["per_class_f1"][modality]
            pseudo = np.nan_to_num(np.array(per_class["pseudo"], dtype=float), nan=0.0)
            naive = np.nan_to_num(np.array(per_class["naive"], dtype=float), nan=0.0)
            for index in range(len(LLP_CLASSES)):
                x = x0 + 5 + index * pitch
                for offset, value, colour in ((0.1, naive[index], _GREY), (0.5, pseudo[index], _BLUE)):
                    bar_top = y0 + panel_h - int(round(panel_h * min(max(value, 0.0), 1.0)))
                    cv2.rectangle(canvas, (int(x + offset * pitch), bar_top), (int(x + (offset + 0.38) * pitch), y0 + panel_h), colour, -1)
            cv2.rectangle(canvas, (x0, y0), (x0 + panel_w, y0 + panel_h), _BLACK, 1)
    labels = _vertical_labels(list(LLP_CLASSES), label_h, pitch)
    for column in range(2):
        x0 = column * (left + panel_w + gap) + left + 5
        canvas[height - label_h : height, x0 : x0 + labels.shape[1]] = labels[:, : max(0, min(labels.shape[1], width - x0))]
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
