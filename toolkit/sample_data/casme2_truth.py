"""How far a Uni-MER build agrees with the truth that `mertk sample-data casme2` planted.

The generated corpus writes, beside its frames, which AUs each sample's frames show and which
its sheet row lists (`ground_truth.parquet`, see `mertk.sample_data.casme2`). A build of that
corpus can then be scored: labelled and planted AUs should be supported, labelled but unplanted
ones rejected, planted but unlabelled ones recorded as unlabelled motion, and '/' apexes
estimated near the true apex. Used by the tests and the benchmark.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mertk.au.facs import SIDES, au_spec
from mertk.sample_data.casme2 import GROUND_TRUTH_NAME
from mertk.shards.dataset import read_shards


def corpus_truth(corpus: Path | str) -> Path:
    """The planted-truth table of a generated corpus folder."""
    return Path(corpus) / GROUND_TRUTH_NAME


def truth_agreement(unimer_dir: Path | str, ground_truth: Path | str, apex_tolerance: int = 3) -> dict:
    """The Done-when figures of a build against the planted truth of a generated corpus.

    Per truth row (sample, au, side), using the AU's primary FACS region and the truth's side
    (both sides when side is null):
      planted_labelled_supported   planted and labelled rows whose every side is supported;
      labelled_unplanted_rejected  labelled but not planted rows supported on no side;
      planted_unlabelled_recorded  planted but unlabelled rows with unlabelled motion recorded in
                                   one of the AU's regions on a planted side (`..._same_au`: and
                                   named as that AU);
      unlabelled_records_planted   unlabelled-motion records that lie in a region of a planted,
                                   unlabelled AU on its side (the rest is spill or noise);
      slash_apex_within            estimated apexes within `apex_tolerance` frames of the truth.
    Rates are fractions (None where there is nothing to count), with the counts beside them.
    """
    rows = {r["sample_id"]: r for r in read_shards(unimer_dir, columns=["sample_id", "apex_frame", "apex_estimated", "au_evidence", "unlabelled_motion"]).to_pylist()}
    truth = pd.read_parquet(ground_truth)
    counts = {k: [0, 0] for k in ("planted_labelled_supported", "labelled_unplanted_rejected", "planted_unlabelled_recorded", "planted_unlabelled_recorded_same_au", "unlabelled_records_planted", "slash_apex_within")}
    for record in truth.itertuples(index=False):
        row = rows.get(record.sample_id)
        if row is None:
            continue
        spec = au_spec(int(record.au))
        side = record.side if isinstance(record.side, str) else None
        sides = (side,) if side else SIDES
        if record.labelled and spec is not None:
            primary = [e for e in row["au_evidence"] if e["au"] == record.au and e["region"] == spec.primary.region and e["side"] in sides]
            if record.planted:
                counts["planted_labelled_supported"][1] += 1
                counts["planted_labelled_supported"][0] += bool(primary) and all(e["supported"] for e in primary)
            else:
                counts["labelled_unplanted_rejected"][1] += 1
                counts["labelled_unplanted_rejected"][0] += not any(e["supported"] for e in primary)
        elif record.planted and not record.labelled and spec is not None:
            regions = {m.region for m in spec.motions}
            found = [u for u in row["unlabelled_motion"] if u["region"] in regions and u["side"] in sides]
            counts["planted_unlabelled_recorded"][1] += 1
            counts["planted_unlabelled_recorded"][0] += bool(found)
            counts["planted_unlabelled_recorded_same_au"][1] += 1
            counts["planted_unlabelled_recorded_same_au"][0] += any(u["au"] == record.au for u in found)
    for sample_id, row in rows.items():
        planted_keys = set()
        for record in truth[(truth["sample_id"] == sample_id) & truth["planted"] & ~truth["labelled"]].itertuples(index=False):
            spec = au_spec(int(record.au))
            if spec is not None:
                sides = (record.side,) if isinstance(record.side, str) else SIDES
                planted_keys |= {(m.region, side) for m in spec.motions for side in sides}
        for motion in row["unlabelled_motion"]:
            counts["unlabelled_records_planted"][1] += 1
            counts["unlabelled_records_planted"][0] += (motion["region"], motion["side"]) in planted_keys
    apex_truth = truth.drop_duplicates("sample_id").set_index("sample_id")["apex_frame"]
    for sample_id, row in rows.items():
        if row["apex_estimated"] and sample_id in apex_truth.index:
            counts["slash_apex_within"][1] += 1
            counts["slash_apex_within"][0] += abs(int(row["apex_frame"]) - int(apex_truth[sample_id])) <= apex_tolerance
    return {k: {"rate": (hit / total if total else None), "hits": hit, "total": total} for k, (hit, total) in counts.items()}
