"""RUN/_report.html of `mertk train dave`: one self-contained page to look at what the detector found.

Sections: the mAP table (validation and test, tIoU 0.1..0.9), the MoDE gate weights, the per-class
test AP as bars, and for a handful of test videos a timeline per class: ground truth on top,
predicted segments below it, shaded by score.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mertk.corpora.unav100 import read_unav_annotations
from mertk.report.html import figure_png, img, table, write_page
from mertk.shards.layout import REPORT_NAME


TIMELINE_VIDEOS = 6
MIN_SHOWN_SCORE = 0.1  # predictions below this are left off the timelines (they still count in mAP)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_ap_png(per_class: dict[str, float]) -> bytes:
    plt = _pyplot()
    names = sorted(per_class, key=lambda name: -per_class[name])
    figure, axis = plt.subplots(figsize=(8, 0.25 * len(names) + 1))
    axis.barh(range(len(names)), [per_class[name] for name in names], color="#68c")
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("test AP, mean over tIoU 0.1..0.9 (%)")
    axis.set_xlim(0, 100)
    return figure_png(figure)


def timeline_png(video_id: str, duration: float, truth: list[tuple[float, float, str]], predicted: list[tuple[float, float, str, float]]) -> bytes:
    """One row per class: ground truth (dark, upper half), predictions (blue, lower half, opacity = score)."""
    plt = _pyplot()
    classes = sorted({name for _, _, name in truth} | {name for _, _, name, _ in predicted})
    row = {name: i for i, name in enumerate(classes)}
    figure, axis = plt.subplots(figsize=(9, 0.45 * max(1, len(classes)) + 0.9))
    for start, end, name in truth:
        axis.barh(row[name] - 0.2, end - start, left=start, height=0.38, color="#333")
    for start, end, name, score in predicted:
        axis.barh(row[name] + 0.2, end - start, left=start, height=0.38, color="#3a7bd5", alpha=float(np.clip(score, 0.15, 1.0)))
    axis.set_yticks(range(len(classes)), classes, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, duration)
    axis.set_xlabel("seconds")
    axis.set_title(f"{video_id}: ground truth (dark, upper) vs predictions with score >= {MIN_SHOWN_SCORE} (blue, lower; opacity = score)", fontsize=9)
    return figure_png(figure)


def write_dave_report(run: Path | str, unav: Path | str, videos: int = TIMELINE_VIDEOS) -> Path:
    run = Path(run)
    metrics = json.loads((run / "metrics.json").read_text())
    annotations = read_unav_annotations(unav)
    rows = pq.read_table(run / "predictions.parquet").to_pylist()
    by_video: dict[str, list[tuple[float, float, str, float]]] = {}
    for row in rows:
        if row["score"] >= MIN_SHOWN_SCORE:
            by_video.setdefault(row["video_id"], []).append((row["start"], row["end"], row["label"], row["score"]))

    thresholds = list(metrics["test"]["map"])
    sections = [
        f"<p>Variant <b>{html.escape(metrics['variant'])}</b>, best epoch {metrics['best_epoch']}; videos: "
        + ", ".join(f"{name} {count}" for name, count in metrics["videos"].items())
        + ". mAP in percent, ActivityNet-style AP averaged over the classes of each split's ground truth.</p>",
        table(["split", *[f"@{t}" for t in thresholds], "average"],
              [[split, *[metrics[split]["map"][t] for t in thresholds], metrics[split]["average_map"]] for split in ("val", "test")]),
    ]  # fmt: skip
    if metrics.get("gate_weights"):
        experts = list(next(iter(metrics["gate_weights"].values())))
        sections.append("<h2>MoDE gate weights (mean over test steps)</h2>")
        sections.append(table(["layer", *experts], [[layer, *weights.values()] for layer, weights in metrics["gate_weights"].items()]))
    if metrics.get("esi_gates"):
        branches = list(next(iter(metrics["esi_gates"].values())))
        sections.append("<h2>ESI gates (learned scale of each branch; 0 = closed, as at the start)</h2>")
        sections.append(table(["stage", *branches], [[stage, *gates.values()] for stage, gates in metrics["esi_gates"].items()]))
    if metrics.get("rejections"):
        sections.append("<h2>Rejected videos</h2>")
        sections.append(table(["video", "reason", "file"], [[r["video"], r["reason"], r["file"]] for r in metrics["rejections"]]))
    sections.append("<h2>Per-class AP (test)</h2>")
    sections.append(img(per_class_ap_png(metrics["test_per_class_ap"]), "per-class AP"))
    sections.append(f"<h2>Timelines of {videos} test videos</h2>")
    for video in annotations.split("test")[:videos]:
        truth = [(event.start, event.end, event.label) for event in video.events]
        sections.append(f"<div class='card'>{img(timeline_png(video.video_id, video.duration, truth, by_video.get(video.video_id, [])), video.video_id)}</div>")
    return write_page(run / REPORT_NAME, f"mertk train dave: {metrics['variant']}", sections)
