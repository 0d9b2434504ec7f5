"""RUN/_report.html of a training run: one self-contained page a researcher reads without squinting.

MER (LOSO): learning curves (training loss per fold, held-out accuracy after each epoch), the pooled
confusion matrix, per-class F1 and recall, per-subject UF1/UAR and the gate weights per subject.
MER (--final): learning curve and gate weights on the training samples. AVVP: learning curves
(training loss, val figures), the 10 AVVP numbers for val and test, per-class F1 on test.

In the per-class charts a class with no sample (and no prediction) is drawn as a hatched grey
"absent" bar, never as an F1 of 0: "not measurable" and "always wrong" are different findings.
Figures are written with fixed sizes and no timestamps (same run -> same bytes).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mertk.report.html import figure_png, img, table, write_page

_FONT = 11
EXPERT_COLOURS = {"structure": "#4C72B0", "texture": "#DD8452", "semantics": "#55A868"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": _FONT, "axes.titlesize": _FONT + 1, "axes.labelsize": _FONT})
    return plt


def _readable(name: str) -> str:
    return name.replace("_", " ")


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """Counts, rows true / columns predicted, with the row's recall in brackets."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 1.1 * len(classes) + 1.8))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [_readable(c) for c in classes]
    axes.set_xticks(range(len(classes)), names, rotation=30, ha="right")
    axes.set_yticks(range(len(classes)), [f"{n} (n={int(t)})" for n, t in zip(names, totals[:, 0])])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title, fontsize=_FONT)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, f"{matrix[i, j]}\n({shares[i, j]:.0%})" if totals[i, 0] else "–", ha="center", va="center",
                      fontsize=_FONT - 1, color="white" if shares[i, j] > 0.5 else "black")  # fmt: skip
    return figure_png(figure)


def _absent(item: dict[str, Any], measure: str) -> bool:
    """No true sample and no prediction of the class (for this measure, when it has its own counts)."""
    support = item.get(f"support_{measure}", item.get("support", 1))
    predicted = item.get(f"predicted_{measure}", item.get("predicted", 0))
    return support == 0 and predicted == 0


def per_class_figure(per_class: dict[str, dict[str, Any]], title: str, measures: Sequence[str] = ("f1", "recall")) -> bytes:
    """Grouped bars per class (horizontal when there are many classes); a class without samples
    and predictions is a hatched grey bar marked 'absent', never an F1 of 0."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    classes = list(per_class)
    colours = ("#4C72B0", "#DD8452", "#55A868")
    horizontal = len(classes) > 10
    if horizontal:
        figure, axes = plt.subplots(figsize=(9.0, 0.28 * len(classes) * len(measures) + 1.5))
    else:
        figure, axes = plt.subplots(figsize=(max(6.5, 0.45 * len(classes) * len(measures) + 2.5), 4.6))
    bar = axes.barh if horizontal else axes.bar
    width = 0.8 / len(measures)
    any_absent = False
    for i, name in enumerate(classes):
        for k, measure in enumerate(measures):
            position = i + (k - (len(measures) - 1) / 2) * width
            if _absent(per_class[name], measure):
                any_absent = True
                bar(position, 1.0, width, color="#f2f2f2", edgecolor="#888888", hatch="//")
                axes.text(*((0.5, position) if horizontal else (position, 0.5)), "absent", ha="center", va="center",
                          rotation=0 if horizontal else 90, fontsize=_FONT - 2, color="#444444")  # fmt: skip
                continue
            value = per_class[name][measure]
            bar(position, value, width, color=colours[k % len(colours)])
            if horizontal:
                axes.text(value + 0.01, position, f"{value:.2f}", ha="left", va="center", fontsize=_FONT - 3)
            else:
                axes.text(position, value + 0.015, f"{value:.2f}", ha="center", va="bottom", fontsize=_FONT - 3)

    def label(name: str) -> str:
        support = per_class[name].get("support")
        return _readable(name) + (f" (n={support})" if support is not None else "")

    if horizontal:
        axes.set_yticks(range(len(classes)), [label(c) for c in classes])
        axes.set_ylim(len(classes) - 0.4, -0.6)  # first class on top
        axes.set_xlim(0, 1.12)
        axes.set_xlabel("score")
        axes.grid(axis="x", alpha=0.3)
    else:
        axes.set_xticks(range(len(classes)), [label(c).replace(" (", "\n(") for c in classes])
        axes.set_xlim(-0.6, len(classes) - 0.4)
        axes.set_ylim(0, 1.15)
        axes.set_ylabel("score")
        axes.grid(axis="y", alpha=0.3)
    axes.set_title(title)
    handles = [Patch(color=colours[k % len(colours)], label=m.upper() if len(m) <= 3 else m) for k, m in enumerate(measures)]
    if any_absent:
        handles.append(Patch(facecolor="#f2f2f2", edgecolor="#888888", hatch="//", label="absent: no sample, no prediction"))
    axes.legend(handles=handles, fontsize=_FONT - 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure_png(figure)


def learning_curves_figure(curves: dict[str, list[float]], title: str, ylabel: str, mean_label: str | None = "mean") -> bytes:
    """One thin line per curve (fold) and their mean, epochs from 1."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 3.8))
    lengths = {len(v) for v in curves.values() if v}
    for name, values in curves.items():
        faint = mean_label is not None and len(curves) > 1  # folds: thin lines under their mean
        axes.plot(range(1, len(values) + 1), values, linewidth=1 if faint else 1.8, alpha=0.45 if faint else 1.0, label=name if len(curves) <= 6 else None)
    if mean_label and len(curves) > 1 and len(lengths) == 1:
        mean = np.mean([v for v in curves.values()], axis=0)
        axes.plot(range(1, len(mean) + 1), mean, color="black", linewidth=2.2, label=mean_label)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[1]:
        axes.legend(fontsize=_FONT - 2, loc="best")
    return figure_png(figure)


def per_subject_figure(folds: list[dict[str, Any]]) -> bytes:
    plt = _pyplot()
    subjects = [fold["subject"] for fold in folds]
    figure, axes = plt.subplots(figsize=(max(7.0, 0.6 * len(subjects) + 2), 4.0))
    x = np.arange(len(subjects))
    for offset, key, colour in ((-0.2, "uf1", "#4C72B0"), (0.2, "uar", "#DD8452")):
        values = [f[key] for f in folds]
        axes.bar(x + offset, values, 0.4, label=key.upper(), color=colour)
        for position, value in zip(x + offset, values):
            axes.text(position, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=_FONT - 4, rotation=90)
    rotate = len(subjects) > 8
    axes.set_xticks(x, [f"{f['subject']} (n={f['samples']})" if rotate else f"{f['subject']}\n(n={f['samples']})" for f in folds],
                    rotation=45 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")  # fmt: skip
    axes.set_ylim(0, 1.12)
    axes.set_ylabel("score on the held-out subject")
    axes.set_title("Per held-out subject (classes absent from the subject are not counted)")
    axes.legend(fontsize=_FONT - 2)
    axes.grid(axis="y", alpha=0.3)
    return figure_png(figure)


def gate_figure(rows: list[tuple[str, dict[str, float]]], title: str) -> bytes:
    """Stacked mean gate weight per expert, one bar per row (subject, or 'all')."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 2.5), 3.8))
    bottom = np.zeros(len(rows))
    experts = list(rows[0][1]) if rows else []
    for expert in experts:
        values = np.asarray([weights[expert] for _, weights in rows])
        axes.bar(range(len(rows)), values, 0.7, bottom=bottom, label=expert, color=EXPERT_COLOURS.get(expert))
        bottom += values
    rotate = len(rows) > 10 or max((len(name) for name, _ in rows), default=0) * len(rows) > 60  # labels would collide
    axes.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=30 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
    axes.set_ylim(0, 1.0)
    axes.set_ylabel("mean gate weight")
    axes.set_title(title)
    axes.legend(fontsize=_FONT - 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure_png(figure)


def _section(heading: str, body: str) -> str:
    return f"<div class='card'><h2>{html.escape(heading)}</h2>{body}</div>"


def _parameters_table(parameters: dict[str, Any]) -> str:
    return table(["parameter", "value"], [(name, str(value)) for name, value in sorted(parameters.items())])


def write_mer_report(path: Path, metrics: dict[str, Any], *, held_out_subjects=None, label_names=None, predicted_names=None, gates_ne=None) -> Path:
    """RUN/_report.html of `mertk train mer` from its metrics (and, for LOSO, the pooled predictions)."""
    sections = []
    test_inputs = metrics["test_inputs"]
    oracle = test_inputs["oracle"]
    banner = (
        "<p><b style='color:#b00'>ORACLE setting (--test-inputs oracle-au)</b>: held-out samples' coded AUs and "
        "label-constrained captions were model inputs. No benchmark gives these at test time; the figures below "
        "measure what the AU codes would add and are not results.</p>"
        if oracle
        else "<p>Test-time inputs: the held-out sample's video alone.</p>"
    )
    inputs_table = table(
        ["", ""],
        [("setting", test_inputs["setting"] + (" (ORACLE)" if oracle else "")),
         ("read for held-out samples", ", ".join(test_inputs["held_out_sample_inputs"])),
         ("training only", ", ".join(test_inputs["training_only"])),
         ("alignment loss", test_inputs["alignment"])],
    )  # fmt: skip
    sections.append(_section("Inputs", banner + inputs_table))
    classes = metrics["classes"]
    if metrics.get("final"):
        training = metrics["training"]
        sections.append(_section("Final model", f"<p>{training['samples']} samples of {len(training['subjects'])} subjects; checkpoint {html.escape(metrics['checkpoint'])}.</p>"))
        losses = {"all subjects": [epoch["train_loss"] for epoch in training["history"]]}
        sections.append(_section("Learning curve", img(learning_curves_figure(losses, "Training loss", "loss (incl. auxiliary and alignment terms)", None), "training loss")))
        sections.append(_section("Gate weights", img(gate_figure([("training samples", training["gate_weights_on_training_samples"])], "Mean gate weight per expert"), "gate weights")))
    else:
        pooled = metrics["pooled"]
        mark = " [ORACLE]" if oracle else ""
        summary = table(
            ["UF1", "UAR", "samples", "folds", "chance UF1 (uniform guess)", "chance UAR"],
            [(f"{pooled['uf1']:.4f}{mark}", f"{pooled['uar']:.4f}{mark}", pooled["samples"], pooled["folds"],
              metrics["chance"]["uf1_uniform_guess"], round(metrics["chance"]["uar"], 4))],
        )  # fmt: skip
        sections.append(_section("Pooled leave-one-subject-out scores", summary))
        folds = metrics["folds"]
        losses = {fold["subject"]: [epoch["train_loss"] for epoch in fold["history"]] for fold in folds}
        accuracy = {fold["subject"]: [epoch.get("held_out_accuracy", np.nan) for epoch in fold["history"]] for fold in folds}
        curves = img(learning_curves_figure(losses, "Training loss per fold", "loss (incl. auxiliary and alignment terms)"), "training loss per fold")
        curves += img(learning_curves_figure(accuracy, "Held-out subject accuracy after each epoch (monitoring only, no selection)", "accuracy"), "held-out accuracy")
        sections.append(_section("Learning curves", curves))
        confusion = np.asarray(metrics["confusion"]["rows_true_columns_predicted"])
        sections.append(_section("Confusion matrix (pooled)", img(confusion_figure(confusion, classes, f"UF1 {pooled['uf1']:.3f}, UAR {pooled['uar']:.3f}{mark}"), "confusion matrix")))
        sections.append(_section("Per class", img(per_class_figure(pooled["per_class"], "Per-class F1 and recall (pooled)"), "per-class F1")))
        sections.append(_section("Per subject", img(per_subject_figure(folds), "per-subject scores") + table(
            ["subject", "samples", "UF1", "UAR", *(f"gate {e}" for e in metrics["experts"])],
            [(f["subject"], f["samples"], f["uf1"], f["uar"], *(f["gate_weights"][e] for e in metrics["experts"])) for f in folds])))  # fmt: skip
        rows = [("all", metrics["gate_weights"])] + [(fold["subject"], fold["gate_weights"]) for fold in folds]
        gate_by_class = []
        if gates_ne is not None and label_names is not None:
            for name in classes:
                chosen = [i for i, label in enumerate(label_names) if label == name]
                if chosen:
                    gate_by_class.append((_readable(name), {e: float(np.mean(gates_ne[chosen, k])) for k, e in enumerate(metrics["experts"])}))
        sections.append(_section("Gate weights", img(gate_figure(rows, "Mean gate weight per expert: all samples, then per held-out subject"), "gate weights per subject")
                                 + (img(gate_figure(gate_by_class, "Mean gate weight per expert, by true class"), "gate weights per class") if gate_by_class else "")))  # fmt: skip
    sections.append(_section("Parameters", _parameters_table(metrics["parameters"])))
    title = f"mertk train mer: {metrics['protocol']}, {'+'.join(metrics['experts'])}{' [ORACLE]' if oracle else ''}"
    return write_page(path, title, sections)


def write_avvp_report(path: Path, metrics: dict[str, Any], per_class_f1: dict[str, dict[str, Any]]) -> Path:
    """RUN/_report.html of `mertk train avvp`: curves, the 10 numbers for val and test, per-class F1 on test."""
    sections = []
    rows = []
    for split in ("val", "test"):
        for level in ("segment", "event"):
            figures = metrics[split][level]
            rows.append((split, level, *(round(figures[k], 2) for k in ("audio", "visual", "audio_visual", "type", "event"))))
    sections.append(_section("The 10 AVVP numbers (F1, %)", table(["split", "level", "audio", "visual", "audio-visual", "Type@AV", "Event@AV"], rows)
                             + f"<p>Model selected on val: epoch {metrics['best_epoch'] + 1 if metrics['best_epoch'] is not None else '-'}.</p>"))  # fmt: skip
    history = metrics["history"]
    curves = img(learning_curves_figure({"train": [e["train_loss"] for e in history]}, "Training loss", "loss", None), "training loss")
    curves += img(learning_curves_figure({"segment Type@AV": [e["val_segment_type"] for e in history],
                                          "segment Event@AV": [e["val_segment_event"] for e in history]}, "Validation figures after each epoch", "F1 (%)", None), "val curves")  # fmt: skip
    sections.append(_section("Learning curves", curves))
    sections.append(_section("Per class (test, segment level)", img(per_class_figure(per_class_f1, "Per-class segment-level F1 on test", ("audio", "visual")), "per-class F1")))
    sections.append(_section("Parameters", _parameters_table(metrics["parameters"])))
    return write_page(path, f"mertk train avvp: {metrics['features']} features, labels {metrics['labels']}", sections)
