"""Evaluate: dense truth per split, the naive baseline, and the AVVP scores of the pseudo-labels.

Truth is `ground_truth_*.csv` where a generated corpus has it (every split), otherwise LLP's eval
files (val and test). The naive baseline copies each video's weak label to every segment of both
modalities; every score is the standard AVVP metric set of mertk.metrics.avvp.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from mertk.corpora.llp_annotations import (
    GROUND_TRUTH_FILES,
    LLP_CLASSES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    DenseLabelDefects,
    DenseLabels,
    llp_annotation_files,
    read_dense_labels,
)
from mertk.migration.config import VideoUnit, weak_matrix
from mertk.migration.label import KeptLabels


def read_pseudo_matrices(out_dir: Path, filenames: Sequence[str]) -> dict[str, np.ndarray]:
    """{modality: (videos, 25, 10) bool} of the shards' hard labels, in `filenames` order."""
    from mertk.shards.dataset import read_shards
    import pyarrow.compute as pc

    table = read_shards(out_dir, columns=["filename", "modality", "segment", "labels"])
    # Vectorised lookups (hundreds of thousands of rows at LLP scale): no Python loop per row.
    wanted = pa.array(list(filenames), type=pa.string())
    video = pc.fill_null(pc.index_in(table.column("filename"), value_set=wanted), -1).to_numpy()
    is_audio = pc.equal(table.column("modality"), "audio").to_numpy()
    segment = table.column("segment").to_numpy()
    labels = table.column("labels").combine_chunks()
    parents = pc.list_parent_indices(labels).to_numpy()
    classes = pc.index_in(pc.list_flatten(labels), value_set=pa.array(LLP_CLASSES)).to_numpy().astype(np.int64)
    out = {}
    for modality, mask in (("audio", is_audio), ("visual", ~is_audio)):
        matrix = np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
        keep = mask[parents] & (video[parents] >= 0)
        matrix[video[parents][keep], classes[keep], segment[parents][keep]] = True
        out[modality] = matrix
    return out


def dense_truth(root: Path, units: Sequence[VideoUnit]) -> dict[str, tuple[list[int], DenseLabels, str]]:
    """Per split with dense labels: (unit rows, DenseLabels, source file names).

    `ground_truth_*.csv` (full truth of a generated corpus) covers every split; otherwise the
    eval files cover val and test.
    """
    out = {}
    truth_files = {m: root / name for m, name in GROUND_TRUTH_FILES.items()}
    if all(path.is_file() for path in truth_files.values()):
        source, splits = truth_files, ("train", "val", "test", "target")
    else:
        files = llp_annotation_files(root)
        if "audio" not in files or "visual" not in files:
            return out
        source, splits = {"audio": files["audio"], "visual": files["visual"]}, ("val", "test")
    rows_of = {split: [row for row, unit in enumerate(units) if unit.split == split] for split in splits}
    rows_of = {split: rows for split, rows in rows_of.items() if rows}
    if not rows_of:
        return out
    described = f"{Path(source['audio']).name} / {Path(source['visual']).name}"
    # The files are parsed once for all splits (each parse is a Python loop over every row);
    # each split's defects are those the per-split reading would report (see _defects_of_split).
    labelled = sorted(row for rows in rows_of.values() for row in rows)
    others = [unit.filename for unit in units if unit.split not in rows_of]
    dense = read_dense_labels(source["audio"], source["visual"], [units[row].filename for row in labelled], others)
    split_of = {units[row].filename: units[row].split for row in labelled}
    position = {row: index for index, row in enumerate(labelled)}
    for split, rows in rows_of.items():
        defects = _defects_of_split(dense.defects, split_of, split)
        if defects is None:  # a defect not attributable to a video: read this split on its own
            split_others = [unit.filename for unit in units if unit.split != split]
            split_dense = read_dense_labels(source["audio"], source["visual"], [units[row].filename for row in rows], split_others)
        else:
            index = [position[row] for row in rows]
            # rows_of_other_videos is not counted here (nothing reads it from this object).
            split_dense = DenseLabels(
                tuple(units[row].filename for row in rows), dense.audio_v_c_t[index], dense.visual_v_c_t[index], defects
            )
        out[split] = (rows, split_dense, described)
    return out


def _defects_of_split(defects: DenseLabelDefects, split_of: dict[str, str], split: str) -> DenseLabelDefects | None:
    """The defects that reading one split's videos alone (the other videos as `other_filenames`) reports.

    Rows about no known video and malformed rows are reported for every split alike; empty and
    out-of-range runs only for the split of their video, named first in the reason
    ("<filename> <modality> <class>: ..."). None if a reason does not name a known video.
    """
    kept: dict[str, list] = {"empty_runs": [], "out_of_range": []}
    for kind, rows in kept.items():
        for bad in getattr(defects, kind):
            owner = split_of.get(bad.reason.split(" ", 1)[0])
            if owner is None:
                return None
            if owner == split:
                rows.append(bad)
    return DenseLabelDefects(
        empty_runs=kept["empty_runs"],
        out_of_range=kept["out_of_range"],
        unknown_video=list(defects.unknown_video),
        not_in_weak_label=list(defects.not_in_weak_label),
        malformed=list(defects.malformed),
    )


def truth_and_baseline(root: Path, units: Sequence[VideoUnit]) -> dict[str, dict[str, Any]]:
    """Per split with dense labels: its truth and the naive baseline's scores (no pseudo-label needed,
    so this runs in a thread while the corpus is labelled)."""
    from mertk.metrics.avvp import avvp_scores, per_class_segment_scores
    from mertk.migration.migrate import naive_labels

    weak_n_c = weak_matrix(units)
    out = {}
    for split, (rows, dense, source) in dense_truth(root, units).items():
        naive = naive_labels(weak_n_c[rows])
        out[split] = {
            "rows": rows,
            "dense": dense,
            "source": source,
            "weak": weak_n_c[rows],
            "scores": avvp_scores(naive, naive, dense.audio_v_c_t, dense.visual_v_c_t).to_dict(),
            "per_class_f1": {
                m: per_class_segment_scores(naive, g).f1.tolist() for m, g in (("audio", dense.audio_v_c_t), ("visual", dense.visual_v_c_t))
            },
        }
    return out


def score_split(part: dict[str, Any], predicted: dict[str, np.ndarray], units: Sequence[VideoUnit]) -> tuple[dict, dict]:
    """One split's scores (pseudo-labels beside the naive baseline) and the matrices the report draws.

    `part`: the split's entry of `truth_and_baseline`; `predicted`: {modality: (videos, 25, 10)}
    hard labels of every unit (only the split's rows are read).
    """
    from mertk.metrics.avvp import avvp_scores, per_class_segment_scores

    rows, dense = part["rows"], part["dense"]
    pred_a, pred_v = predicted["audio"][rows], predicted["visual"][rows]
    pseudo = avvp_scores(pred_a, pred_v, dense.audio_v_c_t, dense.visual_v_c_t)
    scores = {
        "videos": len(rows),
        "truth": part["source"],
        "pseudo": pseudo.to_dict(),
        "naive": part["scores"],
        "per_class_f1": {
            m: {"pseudo": per_class_segment_scores(p, g).f1.tolist(), "naive": part["per_class_f1"][m]}
            for m, p, g in (("audio", pred_a, dense.audio_v_c_t), ("visual", pred_v, dense.visual_v_c_t))
        },
        "truth_defects": dense.defects.counts(),
    }
    matrices = {
        "filenames": [units[r].filename for r in rows],
        "pred": (pred_a, pred_v),
        "truth": (dense.audio_v_c_t, dense.visual_v_c_t),
        "weak": part["weak"],
    }
    return scores, matrices


def evaluate_splits(
    root: Path,
    out_dir: Path,
    units: Sequence[VideoUnit],
    labelled: KeptLabels | None = None,
    baseline: dict[str, dict[str, Any]] | None = None,
    early: Any = None,
) -> tuple[dict, dict]:
    """AVVP scores of pseudo-labels and of the naive baseline per split; and the matrices used.

    The hard labels come from `labelled` when it holds every video (labelled in this process),
    else they are read back from the shards; `baseline` is `truth_and_baseline(root, units)` if
    already computed; `early` (an mertk.execution.prefetch.EarlyResults of `score_split`) holds
    splits already scored from `labelled`'s labels.
    """
    truth = truth_and_baseline(root, units) if baseline is None else baseline
    if not truth:
        return {}, {}
    in_process = labelled is not None and labelled.labelled.all()
    predicted = labelled.labels if in_process else read_pseudo_matrices(out_dir, [u.filename for u in units])
    scores, matrices = {}, {}
    for split, part in truth.items():
        if in_process and early is not None and split in early.futures:
            scores[split], matrices[split] = early.futures[split].result()
        else:
            scores[split], matrices[split] = score_split(part, predicted, units)
    return scores, matrices


def score_target(target_root: Path, target_out: Path, units: Sequence[VideoUnit]) -> dict[str, Any]:
    """The target's k-NN labels scored against its dense truth, beside chance; {} without truth.

    Chance: the same predictions given to randomly permuted videos (same label rates).
    """
    from mertk.metrics.avvp import avvp_scores

    truth = dense_truth(target_root, units)
    if "target" not in truth:
        return {}
    rows, dense, source = truth["target"]
    scored = [units[r] for r in rows]
    predicted = read_pseudo_matrices(target_out, [u.filename for u in scored])
    recovered = avvp_scores(predicted["audio"], predicted["visual"], dense.audio_v_c_t, dense.visual_v_c_t)
    order = np.random.default_rng(0).permutation(len(scored))
    chance = avvp_scores(predicted["audio"][order], predicted["visual"][order], dense.audio_v_c_t, dense.visual_v_c_t)
    return {"truth": source, "knn": recovered.to_dict(), "chance": chance.to_dict()}
