"""Score dense audio-visual event predictions against a UnAV-100 split (`mertk evaluate dave`).

PRED may be:
- a folder of `dave_prediction` shards (with its manifest, or just *.parquet files), or one such
  .parquet file: columns video_id, label_id, start, end, score;
- the JSON the UnAV code writes: `{"database": {video_id: [{"segment": [s, e], "label_id": k,
  "scores": p}, ...]}}` (also "score"; extra keys are ignored).

Scoring is `mertk.metrics.detection` over the split's GT (duplicates removed by the reader).
Rows of videos outside the split count as false positives, as in the reference evaluator; the
user is told how many there were.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mertk.corpora.unav100 import NUM_CLASSES, UnavAnnotationError, UnavVideo, read_unav_annotations
from mertk.metrics.detection import DetectionScores, EventTable, detection_scores

PREDICTION_COLUMNS = ("video_id", "label_id", "start", "end", "score")


class DaveEvaluationError(ValueError):
    """PRED or the annotation file cannot be used; the message names the file (and row)."""


@dataclass
class DaveEvaluation:
    scores: DetectionScores
    split: str
    videos: int  # videos of the split
    predictions: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """`{"map": {"0.1": %, ..., "0.9": %}, "average_map": %, "videos": n}` (the `--json` output)."""
        return {**self.scores.to_dict(), "videos": self.videos}


def truth_events(videos: list[UnavVideo]) -> EventTable:
    """The GT events of `videos` as one EventTable (file order)."""
    rows = [(video.video_id, event.label_id, event.start, event.end) for video in videos for event in video.events]
    if not rows:
        return EventTable.from_columns([], [], [], [])
    video, label, start, end = zip(*rows)
    return EventTable.from_columns(video, label, start, end)


def _from_json(path: Path) -> EventTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DaveEvaluationError(f"{path}: not a readable JSON file ({error})") from None
    database = data.get("database", data.get("results")) if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise DaveEvaluationError(f'{path}: expected {{"database": {{video_id: [{{"segment", "label_id", "scores"}}]}}}}')
    for video_id, entries in database.items():
        if not isinstance(entries, list):
            raise DaveEvaluationError(f"{path}: video {video_id}: expected a list of predicted segments")
    try:  # the fast path: whole columns at once; on any failure the slow path below names the row
        pairs = [(video_id, entry) for video_id, entries in database.items() for entry in entries]
        segments = np.array([entry["segment"] for _, entry in pairs], dtype=np.float64).reshape(len(pairs), 2)
        labels = np.array([entry["label_id"] for _, entry in pairs])
        scores = np.array([entry["scores"] if "scores" in entry else entry["score"] for _, entry in pairs], dtype=np.float64)
        if len(pairs) and (labels.dtype.kind not in "iu"):
            raise ValueError("label_id must be an integer")
        return EventTable.from_columns([video_id for video_id, _ in pairs], labels.astype(np.int64), segments[:, 0], segments[:, 1], scores)
    except (KeyError, TypeError, ValueError):
        pass
    for video_id, entries in database.items():
        for index, entry in enumerate(entries):
            try:
                _start, _end = (float(v) for v in entry["segment"])
                float(entry["scores"] if "scores" in entry else entry["score"])
                if isinstance(entry["label_id"], bool) or not isinstance(entry["label_id"], int):
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise DaveEvaluationError(f"{path}: video {video_id}, prediction {index}: expected segment [s, e], integer label_id and scores") from None
    raise DaveEvaluationError(f"{path}: predictions of mixed types; expected segment [s, e], integer label_id and scores in every entry")


def _from_parquet(path: Path) -> EventTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mertk.shards.dataset import read_shards
    from mertk.shards.layout import MANIFEST_NAME

    try:
        if path.is_dir():
            if (path / MANIFEST_NAME).is_file():
                table = read_shards(path, columns=list(PREDICTION_COLUMNS))
            else:
                files = sorted(path.glob("*.parquet"))
                if not files:
                    raise DaveEvaluationError(f"{path}: no {MANIFEST_NAME} and no .parquet file in this folder")
                table = pa.concat_tables([pq.read_table(file, columns=list(PREDICTION_COLUMNS)) for file in files])
        else:
            table = pq.read_table(path, columns=list(PREDICTION_COLUMNS))
    except DaveEvaluationError:
        raise
    except (OSError, KeyError, ValueError, pa.ArrowException) as error:
        raise DaveEvaluationError(f"{path}: not a dave_prediction shard with columns {', '.join(PREDICTION_COLUMNS)} ({error})") from None
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in PREDICTION_COLUMNS}
    if any(table.column(name).null_count for name in PREDICTION_COLUMNS):
        raise DaveEvaluationError(f"{path}: null values in {', '.join(n for n in PREDICTION_COLUMNS if table.column(n).null_count)}")
    return EventTable.from_columns(*(columns[name] for name in PREDICTION_COLUMNS))


def read_predictions(path: Path | str) -> EventTable:
    """PRED (shards, .parquet or UnAV JSON) as an EventTable; DaveEvaluationError naming the bad row."""
    path = Path(path)
    if not path.exists():
        raise DaveEvaluationError(f"{path}: no such file or folder")
    predicted = _from_json(path) if path.suffix.lower() == ".json" else _from_parquet(path)
    bad = ~(np.isfinite(predicted.start) & np.isfinite(predicted.end) & np.isfinite(predicted.score))
    bad |= (predicted.label < 0) | (predicted.label >= NUM_CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DaveEvaluationError(
            f"{path}: row {row} (video {predicted.video[row]}): label_id {predicted.label[row]}, segment "
            f"[{predicted.start[row]}, {predicted.end[row]}], score {predicted.score[row]}; expected label_id 0..{NUM_CLASSES - 1} and finite numbers"
            f" ({int(bad.sum())} such rows)"
        )
    return predicted


def evaluate_dave_predictions(pred: Path | str, unav: Path | str, split: str) -> DaveEvaluation:
    try:
        annotations = read_unav_annotations(unav)
        videos = annotations.split(split)
    except UnavAnnotationError as error:
        raise DaveEvaluationError(str(error)) from None
    if not videos:
        raise DaveEvaluationError(f"{annotations.path}: no video of subset {split!r}")
    predicted = read_predictions(pred)
    truth = truth_events(videos)
    scores = detection_scores(truth, predicted)
    warnings = []
    split_ids = np.array(sorted(video.video_id for video in videos))
    outside = int((~np.isin(predicted.video, split_ids)).sum())
    if outside:
        warnings.append(f"{outside} predicted segments name videos outside the {split} split; they count as false positives, as in the reference evaluator")
    if annotations.duplicates_removed:
        warnings.append(f"{annotations.duplicates_removed} duplicated ground-truth events counted once")
    return DaveEvaluation(scores, split, len(videos), len(predicted), warnings)
