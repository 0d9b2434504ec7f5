"""MER metrics: agreement with scikit-learn, conventions, prediction files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, recall_score

from mertk.metrics.mer import (
    MER_PROTOCOL_CLASSES,
    MerEvaluationError,
    confusion_matrix,
    evaluate_mer_predictions,
    mer_scores,
)

FIVE = MER_PROTOCOL_CLASSES["5class"]


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_sklearn_macro_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # skewed class use so that some classes are missing from labels, predictions or both
    label_p = rng.dirichlet(np.full(len(FIVE), 0.5))
    labels = [FIVE[i] for i in rng.choice(len(FIVE), size=n, p=label_p)]
    predictions = [FIVE[i] for i in rng.choice(len(FIVE), size=n, p=rng.dirichlet(np.full(len(FIVE), 0.5)))]
    scores = mer_scores(labels, predictions, FIVE)
    kwargs = dict(labels=list(FIVE), average="macro", zero_division=0)
    assert scores["uf1"] == pytest.approx(f1_score(labels, predictions, **kwargs), abs=1e-12)
    assert scores["uar"] == pytest.approx(recall_score(labels, predictions, **kwargs), abs=1e-12)
    assert confusion_matrix(labels, predictions, FIVE).tolist() == sk_confusion(labels, predictions, labels=list(FIVE)).tolist()


def test_hand_computed_case_and_conventions():
    classes = ("negative", "positive", "surprise")
    labels = ["negative", "negative", "negative", "positive"]
    predictions = ["negative", "negative", "positive", "negative"]
    scores = mer_scores(labels, predictions, classes)
    # negative: TP 2, FP 1, FN 1 -> F1 2/3, recall 2/3; positive: TP 0 -> 0, 0; surprise absent -> 0, 0
    assert scores["uf1"] == pytest.approx((2 / 3) / 3)
    assert scores["uar"] == pytest.approx((2 / 3) / 3)
    assert scores["absent_classes"] == ["surprise"]
    assert scores["per_class"]["positive"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1}
    skipped = mer_scores(labels, predictions, classes, skip_absent=True)
    assert skipped["uf1"] == pytest.approx((2 / 3) / 2)


def test_perfect_predictions_score_one():
    labels = list(FIVE) * 3
    assert mer_scores(labels, labels, FIVE)["uf1"] == 1.0
    assert mer_scores(labels, labels, FIVE)["uar"] == 1.0


def test_unknown_class_names_the_row():
    with pytest.raises(MerEvaluationError, match=r"row 1: prediction 'fear' is not a class"):
        mer_scores(["others", "others"], ["others", "fear"], FIVE)


def write_predictions(path, rows):
    pd.DataFrame(rows).to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def test_evaluate_file_with_composite_datasets(tmp_path):
    rows = [
        {"sample_id": f"s{i}", "subject": f"sub{i % 3}", "dataset": dataset, "label": label, "prediction": prediction}
        for i, (dataset, label, prediction) in enumerate(
            [
                ("casme2", "negative", "negative"),
                ("casme2", "positive", "positive"),
                ("casme2", "surprise", "negative"),
                ("samm", "negative", "negative"),
                ("samm", "negative", "surprise"),
            ]
        )
    ]
    path = write_predictions(tmp_path / "pred.csv", rows)
    result = evaluate_mer_predictions(path)
    assert result["classes"] == ["negative", "positive", "surprise"]  # inferred: the MEGC2019 set
    labels = [row["label"] for row in rows]
    predictions = [row["prediction"] for row in rows]
    kwargs = dict(labels=result["classes"], average="macro", zero_division=0)
    assert result["uf1"] == pytest.approx(f1_score(labels, predictions, **kwargs))
    assert result["uar"] == pytest.approx(recall_score(labels, predictions, **kwargs))
    assert set(result["datasets"]) == {"casme2", "samm"}
    assert result["datasets"]["samm"]["samples"] == 2
    assert result["datasets"]["samm"]["absent_classes"] == ["positive"]
    assert result["samples"] == 5 and result["subjects"] == 3


def test_bad_prediction_files(tmp_path):
    with pytest.raises(MerEvaluationError, match="no such file"):
        evaluate_mer_predictions(tmp_path / "missing.csv")
    path = write_predictions(tmp_path / "p.tsv", [{"sample_id": "a", "subject": "1", "label": "others"}])
    with pytest.raises(MerEvaluationError, match="missing column.*prediction"):
        evaluate_mer_predictions(path)
    path = write_predictions(tmp_path / "q.csv", [{"sample_id": "a", "subject": "1", "label": "others", "prediction": "x"}])
    with pytest.raises(MerEvaluationError, match="q.csv: row 0: prediction 'x'"):
        evaluate_mer_predictions(path, protocol="5class")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(MerEvaluationError, match="broken.parquet: cannot be read"):
        evaluate_mer_predictions(broken)
