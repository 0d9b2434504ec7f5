"""The MER metrics of the field: UF1 (macro F1) and UAR (macro recall) over pooled predictions.

Protocol: under leave-one-subject-out, the predictions of all folds are pooled first and the
metrics are computed once over the pool (not averaged over folds). Every class of the protocol
counts in the macro mean, in the order given:
- F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c); recall_c = TP_c / (TP_c + FN_c).
- A class with true samples but no correct prediction has recall 0 and F1 0.
- A class with no true and no predicted sample (possible for a small corpus or one dataset of a
  composite protocol) counts 0 for F1 and for recall: it stays in the denominator of both
  means. This is what scikit-learn's f1_score / recall_score(average="macro") give with the
  labels passed explicitly and zero_division=0; the result lists such classes in
  `absent_classes` so a reader sees why a figure is low. `skip_absent=True` leaves them out.
UF1 and UAR are fractions in [0, 1], as MEGC reports them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

# The class sets of the common protocols (DESIGN.md): CASME II five classes, MEGC2019 composite.
MER_PROTOCOL_CLASSES: dict[str, tuple[str, ...]] = {
    "5class": ("happiness", "disgust", "surprise", "repression", "others"),
    "3class": ("negative", "positive", "surprise"),
    # MEGC2019 composite selected by the organisers' list; CAS(ME)^3's own protocols
    "megc2019": ("negative", "positive", "surprise"),
    "casme3-3class": ("negative", "positive", "surprise"),
    "casme3-4class": ("negative", "positive", "surprise", "others"),
    "casme3-7class": ("anger", "disgust", "fear", "happy", "sad", "surprise", "others"),
}
PREDICTION_COLUMNS = ("sample_id", "subject", "label", "prediction")


class MerEvaluationError(ValueError):
    """Predictions that cannot be scored; the message names the file and row where it can."""


def _class_indices(values: Sequence[str], classes: Sequence[str], what: str) -> np.ndarray:
    index = {name: position for position, name in enumerate(classes)}
    result = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if value not in index:
            raise MerEvaluationError(f"row {row}: {what} {value!r} is not a class of the protocol ({', '.join(classes)})")
        result[row] = index[value]
    return result


def confusion_matrix(labels: Sequence[str], predictions: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(classes, classes) int64: rows are true classes, columns predicted, in `classes` order."""
    if len(labels) != len(predictions):
        raise MerEvaluationError(f"{len(labels)} labels but {len(predictions)} predictions")
    true_n = _class_indices(labels, classes, "label")
    predicted_n = _class_indices(predictions, classes, "prediction")
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (true_n, predicted_n), 1)
    return matrix


def scores_from_confusion(matrix: np.ndarray, classes: Sequence[str], skip_absent: bool = False) -> dict[str, Any]:
    """UF1, UAR and per-class figures from a confusion matrix (rows true, columns predicted).

    Returns {"uf1", "uar", "samples", "classes", "absent_classes", "per_class": {class:
    {"precision", "recall", "f1", "support", "predicted"}}}; see the module docstring for the
    conventions. Per-class precision of a never-predicted class is 0.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)  # true samples per class
    predicted = matrix.sum(axis=0).astype(np.float64)
    fp, fn = predicted - tp, support - tp
    zeros = np.zeros_like(tp)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=zeros.copy(), where=(2 * tp + fp + fn) > 0)
    recall = np.divide(tp, support, out=zeros.copy(), where=support > 0)
    precision = np.divide(tp, predicted, out=zeros.copy(), where=predicted > 0)
    absent = (support == 0) & (predicted == 0)
    counted = ~absent if skip_absent else np.ones_like(absent)
    n_counted = int(counted.sum())
    return {
        "uf1": float(f1[counted].sum() / n_counted) if n_counted else 0.0,
        "uar": float(recall[counted].sum() / n_counted) if n_counted else 0.0,
        "samples": int(matrix.sum()),
        "classes": list(classes),
        "absent_classes": [name for name, gone in zip(classes, absent) if gone],
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def mer_scores(
    labels: Sequence[str], predictions: Sequence[str], classes: Sequence[str], skip_absent: bool = False
) -> dict[str, Any]:
    """UF1 and UAR (fractions) of pooled predictions over all `classes` of the protocol.

    `labels` and `predictions` are class names, one per sample; a name outside `classes` raises
    MerEvaluationError naming the row. Returns the dict of `scores_from_confusion` (keys
    "uf1", "uar", "samples", "classes", "absent_classes", "per_class").
    """
    if not classes:
        raise MerEvaluationError("the protocol has no classes")
    return scores_from_confusion(confusion_matrix(labels, predictions, classes), classes, skip_absent)


# --- prediction files -----------------------------------------------------------------------------
def read_mer_predictions(path: Path | str):
    """A mer_prediction table as a pandas DataFrame, from a shard directory (with its _manifest.json),
    a .parquet file, or a .csv / .tsv file with the columns sample_id, subject, label,
    prediction (and dataset for composite protocols)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from mertk.shards.dataset import has_manifest, read_shards

    path = Path(path)
    try:
        if path.is_dir():
            if has_manifest(path):
                frame = read_shards(path, kind="mer_prediction").to_pandas()
            else:
                files = sorted(path.glob("*.parquet"))
                if not files:
                    raise MerEvaluationError(f"{path}: no _manifest.json and no .parquet file in this folder")
                frame = pd.concat([pq.read_table(file).to_pandas() for file in files], ignore_index=True)
        elif not path.exists():
            raise MerEvaluationError(f"{path}: no such file or folder")
        elif path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
        elif path.suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        else:
            raise MerEvaluationError(f"{path}: expected a shard folder, .parquet, .csv or .tsv file")
    except MerEvaluationError:
        raise
    except Exception as error:  # unreadable Parquet / CSV: say which file
        raise MerEvaluationError(f"{path}: cannot be read as a prediction table ({type(error).__name__}: {error})") from None
    missing = [column for column in PREDICTION_COLUMNS if column not in frame.columns]
    if missing:
        raise MerEvaluationError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, frame.columns))})")
    for column in PREDICTION_COLUMNS + (("dataset",) if "dataset" in frame.columns else ()):
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            raise MerEvaluationError(f"{path}: row {int(np.flatnonzero(empty.to_numpy())[0])}: empty {column}")
    return frame


def infer_protocol_classes(labels: Sequence[str], predictions: Sequence[str]) -> tuple[str, ...]:
    """The class set when none is given: the first known protocol (MER_PROTOCOL_CLASSES) that
    holds every label and prediction; otherwise the sorted union of the names seen."""
    seen = set(labels) | set(predictions)
    for classes in MER_PROTOCOL_CLASSES.values():
        if seen <= set(classes):
            return classes
    return tuple(sorted(seen))


def evaluate_mer_predictions(
    path: Path | str,
    classes: Sequence[str] | None = None,
    protocol: str | None = None,
    skip_absent: bool = False,
) -> dict[str, Any]:
    """Score a prediction file: pooled UF1/UAR plus, when a `dataset` column holds more than one
    corpus, the same figures per dataset (over the same class list).

    Classes: `classes` if given, else those of `protocol` ("5class" | "3class"), else inferred
    (infer_protocol_classes). Returns {"uf1", "uar", "samples", "subjects", "classes",
    "absent_classes", "per_class", "confusion", "datasets": {name: {"uf1", "uar", "samples",
    "absent_classes"}}}.
    """
    frame = read_mer_predictions(path)
    labels = frame["label"].astype(str).tolist()
    predictions = frame["prediction"].astype(str).tolist()
    if classes is None and protocol is not None:
        if protocol not in MER_PROTOCOL_CLASSES:
            raise MerEvaluationError(f"unknown protocol {protocol!r}; use {' or '.join(MER_PROTOCOL_CLASSES)}")
        classes = MER_PROTOCOL_CLASSES[protocol]
    classes = tuple(classes) if classes is not None else infer_protocol_classes(labels, predictions)
    try:
        matrix = confusion_matrix(labels, predictions, classes)
    except MerEvaluationError as error:
        raise MerEvaluationError(f"{path}: {error}") from None
    result = scores_from_confusion(matrix, classes, skip_absent)
    result["subjects"] = int(frame["subject"].astype(str).nunique())
    result["confusion"] = matrix.tolist()
    result["datasets"] = {}
    if "dataset" in frame.columns and frame["dataset"].nunique() > 1:
        for name, group in frame.groupby("dataset", sort=True):
            scores = mer_scores(group["label"].astype(str).tolist(), group["prediction"].astype(str).tolist(), classes, skip_absent)
            result["datasets"][str(name)] = {key: scores[key] for key in ("uf1", "uar", "samples", "absent_classes")}
    return result
