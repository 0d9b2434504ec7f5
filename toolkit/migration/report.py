"""The pseudo-label quality report: terminal table and self-contained HTML page."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES, MODALITIES
from mertk.report.html import figure_png, img, table, write_page

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


def _per_class_figure(scores: dict[str, Any]) -> bytes:
    """Per-class segment F1, pseudo-labels beside naive: one row per split, one column per modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(scores)
    figure, axes = plt.subplots(len(splits), 2, figsize=(14, 3.4 * len(splits)), sharey=True, squeeze=False)
    x = np.arange(len(LLP_CLASSES))
    for split, axes_row in zip(splits, axes):
        per_class = scores[split]["per_class_f1"]
        for axis, modality in zip(axes_row, MODALITIES):
            pseudo = np.nan_to_num(np.array(per_class[modality]["pseudo"], dtype=float), nan=0.0)
            naive = np.nan_to_num(np.array(per_class[modality]["naive"], dtype=float), nan=0.0)
            axis.bar(x - 0.2, 100 * naive, width=0.4, label="naive (weak label everywhere)", color="#bbbbbb")
            axis.bar(x + 0.2, 100 * pseudo, width=0.4, label="pseudo-labels", color="#3b75af")
            axis.set_xticks(x, LLP_CLASSES if split == splits[-1] else [], rotation=75, fontsize=7)
            axis.set_title(f"{split}: {modality} segment F1 per class", fontsize=9)
            axis.set_ylim(0, 100)
        axes_row[0].set_ylabel("F1 (%)")
    axes[0][0].legend(fontsize=8, loc="lower left")
    return figure_png(figure)


def _timeline_figure(videos: list[tuple[str, tuple, tuple, np.ndarray]]) -> bytes:
    """One row per video, one column per modality: true segments above, migrated below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_per_video = []
    for _, _, truth, weak_c in videos:
        rows_per_video.append(sorted(set(np.flatnonzero(weak_c)) | set(np.flatnonzero(truth[0].any(1) | truth[1].any(1)))))
    heights = [max(len(classes), 1) for classes in rows_per_video]
    figure, axes = plt.subplots(
        len(videos), 2, figsize=(11, 0.6 + 0.42 * sum(heights) + 0.5 * len(videos)), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for (filename, pred, truth, _), classes, axes_row in zip(videos, rows_per_video, axes):
        for axis, modality, p, t in zip(axes_row, MODALITIES, pred, truth):
            for row, c in enumerate(classes):
                on_true, on_pred = np.flatnonzero(t[c]), np.flatnonzero(p[c])
                axis.broken_barh([(x, 1) for x in on_true], (row - 0.4, 0.35), color="#2ca02c")
                axis.broken_barh([(x, 1) for x in on_pred], (row + 0.05, 0.35), color="#3b75af")
            axis.set_xlim(0, 10)
            axis.set_ylim(len(classes) - 0.5, -0.6)
            axis.set_yticks(range(len(classes)), [LLP_CLASSES[c] for c in classes], fontsize=7)
            axis.set_xticks(range(11))
            axis.tick_params(axis="x", labelsize=7)
            axis.set_title(f"{filename} {modality}", fontsize=8)
    figure.suptitle("true segments (green, upper half) vs migrated (blue, lower half)", fontsize=9)
    figure.tight_layout()
    return figure_png(figure)


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
        f"Videos written: {manifest.inputs_written}; rejected: {manifest.inputs_rejected} (see manifest.json). "
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
