"""Score AVVP predictions or pseudo-labels against the LLP dense labels of val or test.

PRED may be:
- a folder of `avvp_pseudo_label` shards (segment rows with a list of labels), or of
  `avvp_prediction` shards (eval layout), with or without a manifest;
- a .parquet file of either kind;
- a .tsv / .csv file in the eval layout: filename, modality ("audio"|"visual"), event_labels
  (one class), onset, offset (integer seconds, offset exclusive).
The kind is told by the columns. Every video of the split counts; a video without rows predicts
nothing. Rows of videos outside the split are ignored and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mertk.corpora.llp_annotations import (
    LLP_CLASS_INDEX,
    MODALITIES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    DenseLabelDefects,
    LlpAnnotationError,
    read_split_dense_labels,
)
from mertk.metrics.avvp import AvvpScores, EvalRowError, avvp_scores, rows_to_matrices

EVAL_LAYOUT_COLUMNS = ("filename", "modality", "event_labels", "onset", "offset")
PSEUDO_LABEL_COLUMNS = ("filename", "modality", "segment", "labels")


class AvvpEvaluationError(ValueError):
    """PRED or the LLP folder cannot be used; the message names the file (and row)."""


@dataclass
class PredictionMatrices:
    """Predictions of the split's videos as (videos, 25, 10) bool matrices."""

    audio_v_c_t: np.ndarray
    visual_v_c_t: np.ndarray
    kind: str  # "pseudo_label" or "eval_layout"
    rows: int  # rows read
    rows_outside_split: int  # rows of videos that are not in the split (ignored)
    videos_with_rows: int  # videos of the split with at least one row


@dataclass
class AvvpEvaluation:
    """Scores plus what a user should know about the inputs."""

    scores: AvvpScores
    split: str
    prediction: PredictionMatrices
    defects: DenseLabelDefects
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Exactly `{"segment": {...}, "event": {...}, "videos": n}` (the `--json` output)."""
        return self.scores.to_dict()


def _read_table(path: Path):
    """PRED as a pyarrow Table (all shards of a folder concatenated, in name or manifest order)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from mertk.shards.dataset import has_manifest, read_shards

    if not path.exists():
        raise AvvpEvaluationError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            if has_manifest(path):
                return read_shards(path, kind="avvp_prediction")
            files = sorted(path.glob("*.parquet"))
            if not files:
                raise AvvpEvaluationError(f"{path}: no _manifest.json and no .parquet file in this folder")
            return pa.concat_tables([pq.read_table(file) for file in files], promote_options="default")
        if path.suffix == ".parquet":
            return pq.read_table(path)
        if path.suffix in (".tsv", ".csv"):
            delimiter = "\t" if path.suffix == ".tsv" else ","
            return pa_csv.read_csv(
                path,
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=pa_csv.ConvertOptions(
                    column_types={"filename": pa.string(), "modality": pa.string(), "event_labels": pa.string()}
                ),
            )
    except AvvpEvaluationError:
        raise
    except Exception as error:  # corrupt Parquet, ragged CSV, unreadable manifest: name the file
        raise AvvpEvaluationError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    raise AvvpEvaluationError(f"{path}: expected a shard folder, a .parquet file or a .tsv/.csv file")


def prediction_matrices(path: Path | str, filenames: list[str]) -> PredictionMatrices:
    """Read PRED (see the module docstring) into matrices for `filenames`, in that order."""
    path = Path(path)
    table = _read_table(path)
    columns = set(table.column_names)
    if set(PSEUDO_LABEL_COLUMNS) <= columns:
        audio, visual, outside, with_rows = _pseudo_label_matrices(table.select(list(PSEUDO_LABEL_COLUMNS)), filenames, path)
        kind = "pseudo_label"
    elif set(EVAL_LAYOUT_COLUMNS) <= columns:
        rows = table.select(list(EVAL_LAYOUT_COLUMNS)).to_pylist()
        try:
            audio, visual, outside = rows_to_matrices(rows, filenames, source=str(path))
        except EvalRowError as error:
            raise AvvpEvaluationError(str(error)) from None
        split_names = set(filenames)
        with_rows = len({row["filename"] for row in rows} & split_names)
        kind = "eval_layout"
    else:
        raise AvvpEvaluationError(
            f"{path}: columns {', '.join(table.column_names)} are neither the eval layout "
            f"({', '.join(EVAL_LAYOUT_COLUMNS)}) nor avvp_pseudo_label ({', '.join(PSEUDO_LABEL_COLUMNS)})"
        )
    return PredictionMatrices(audio, visual, kind, table.num_rows, outside, with_rows)


def _pseudo_label_matrices(table, filenames: list[str], path: Path):
    """Segment rows (filename, modality, segment, labels list) -> matrices, vectorised."""
    import pyarrow.compute as pc

    index = {name: position for position, name in enumerate(filenames)}
    names = table.column("filename").to_pylist()
    modality = table.column("modality").to_pylist()
    segment = table.column("segment").to_numpy(zero_copy_only=False)
    for row, (name, mod, seg) in enumerate(zip(names, modality, segment)):
        if mod not in MODALITIES:
            raise AvvpEvaluationError(f"{path}: row {row} ({name}): modality {mod!r} is not 'audio' or 'visual'")
        if seg is None or not 0 <= seg < NUM_SEGMENTS:
            raise AvvpEvaluationError(f"{path}: row {row} ({name}): segment {seg!r} outside 0..9")
    video_n = np.array([index.get(name, -1) for name in names], dtype=np.int64)
    is_audio_n = np.array([mod == "audio" for mod in modality], dtype=bool)
    labels = table.column("labels").combine_chunks()
    parents = pc.list_parent_indices(labels).to_numpy()
    flat = pc.list_flatten(labels).to_pylist()
    class_m = np.empty(len(flat), dtype=np.int64)
    for position, name in enumerate(flat):
        if name not in LLP_CLASS_INDEX:
            row = int(parents[position])
            raise AvvpEvaluationError(f"{path}: row {row} ({names[row]}): unknown class {name!r}")
        class_m[position] = LLP_CLASS_INDEX[name]
    audio = np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    visual = np.zeros_like(audio)
    inside_m = video_n[parents] >= 0
    for matrix, wanted in ((audio, True), (visual, False)):
        keep = inside_m & (is_audio_n[parents] == wanted)
        matrix[video_n[parents][keep], class_m[keep], segment.astype(np.int64)[parents][keep]] = True
    outside = int((video_n < 0).sum())
    with_rows = len(set(video_n[video_n >= 0].tolist()))
    return audio, visual, outside, with_rows


def evaluate_avvp_predictions(pred: Path | str, llp_root: Path | str, split: str) -> AvvpEvaluation:
    """The ten AVVP numbers of PRED on the val or test split of the LLP folder `llp_root`.

    Ground truth: AVVP_eval_audio.csv / AVVP_eval_visual.csv and AVVP_<split>_pd.csv under
    `llp_root` (or its data/ folder), with their defects handled as the reference does (see
    mertk.corpora.llp_annotations). `warnings` holds one line on those defects and one on PRED
    when it misses videos of the split or holds rows of other videos.
    """
    if split not in ("val", "test"):
        raise AvvpEvaluationError(f"split must be 'val' or 'test', not {split!r}")
    try:
        weak, dense = read_split_dense_labels(llp_root, split)
    except LlpAnnotationError as error:
        raise AvvpEvaluationError(str(error)) from None
    filenames = [record.filename for record in weak]
    prediction = prediction_matrices(pred, filenames)
    scores = avvp_scores(prediction.audio_v_c_t, prediction.visual_v_c_t, dense.audio_v_c_t, dense.visual_v_c_t)
    warnings = []
    if dense.defects.total:
        warnings.append(f"ground truth defects, handled as the reference protocol does: {dense.defects.summary()}")
    missing = len(filenames) - prediction.videos_with_rows
    if prediction.videos_with_rows == 0:
        warnings.append(f"{pred}: no row for any of the {len(filenames)} {split} videos: everything counts as predicting nothing")
    elif missing and prediction.kind == "pseudo_label":
        warnings.append(f"{pred}: {missing} of {len(filenames)} {split} videos have no rows (they predict nothing)")
    if prediction.rows_outside_split:
        warnings.append(f"{pred}: {prediction.rows_outside_split} rows of videos outside the {split} split ignored")
    return AvvpEvaluation(scores, split, prediction, dense.defects, warnings)
