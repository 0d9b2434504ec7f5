"""MEGC2019 composite: the shipped list, and a selection that equals it (missing samples reported)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from mertk.corpora.megc2019 import CompositeEntry, composite_key, load_composite_list, missing_summary, select_composite
from mertk.corpora.mer import MerSample
from conftest import shared_data_folder

SHARED = (shared_data_folder("megc2019") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "megc2019") / "combined_3class_gt.csv"
SHIPPED = Path(__file__).resolve().parents[1] / "toolkit" / "corpora" / "data" / "combined_3class_gt.csv"
MAPS = {"negative": "negative", "positive": "positive", "surprise": "surprise"}


def _as_reader_would(entry: CompositeEntry, unpadded: bool) -> MerSample:
    """The sample a reader makes for a listed clip, in that corpus' own spelling."""
    subject, clip = entry.subject, entry.clip
    if entry.dataset == "samm":
        subject = f"{int(subject):03d}"  # the list writes 32, the folder 032
    if entry.dataset == "smic" and unpadded:
        number = int(subject[1:])
        subject, clip = f"s{number}", re.sub(r"^s0*(\d+)_([a-z]+)_0*(\d+)$", lambda m: f"s{int(m[1])}_{m[2]}_{int(m[3])}", clip)
    return MerSample(
        dataset=entry.dataset, subject=subject, clip=clip, onset_frame=1, apex_frame=None, offset_frame=2,
        au_labels=(), au_text="", emotion=entry.label, frames=(), protocol_labels=(("3class", entry.label),),
    )


def test_shipped_list_is_the_published_one():
    entries = load_composite_list()
    assert len(entries) == 442
    assert Counter(e.dataset for e in entries) == {"casme2": 145, "samm": 133, "smic": 164}
    assert len({(e.dataset, e.subject) for e in entries}) == 68
    assert len({e.key for e in entries}) == 442
    if not SHARED.is_file():
        pytest.skip(f"the published file is not at {SHARED} (absent in a fresh clone; CI has it)")
    assert SHIPPED.read_bytes() == SHARED.read_bytes()


def test_selection_equals_the_list_and_reports_missing():
    entries = load_composite_list()
    samples = [_as_reader_would(e, unpadded=i % 2 == 0) for i, e in enumerate(entries)]
    extra = MerSample(dataset="casme2", subject="sub26", clip="EP99_99", onset_frame=1, apex_frame=None, offset_frame=2,
                      au_labels=(), au_text="", emotion="others", frames=())
    other_corpus = MerSample(dataset="mmew", subject="S01", clip="x", onset_frame=1, apex_frame=None, offset_frame=2,
                             au_labels=(), au_text="", emotion="happiness", frames=())
    dropped = {3, 150, 300}  # one of each corpus' part is absent from the user's folders
    kept = [s for i, s in enumerate(samples) if i not in dropped]
    selection = select_composite(kept[::-1] + [extra, other_corpus])
    assert [composite_key(s.dataset, s.subject, s.clip) for s in selection.samples] == [e.key for i, e in enumerate(entries) if i not in dropped]
    assert selection.labels == [e.label for i, e in enumerate(entries) if i not in dropped]
    assert [e.line for e in selection.missing] == [i + 1 for i in sorted(dropped)]
    assert selection.label_disagreements == []
    assert sum(selection.counts().values()) == 439 and selection.subjects <= 68
    summary = missing_summary(selection)
    assert summary.startswith("3 listed MEGC2019 samples missing") and entries[3].clip in summary


def test_label_disagreement_is_reported_and_the_list_wins():
    entry = load_composite_list()[0]
    sample = _as_reader_would(entry, unpadded=False)
    wrong = MerSample(**{**sample.__dict__, "protocol_labels": (("3class", "surprise"),)})
    selection = select_composite([wrong], [entry])
    assert selection.labels == [entry.label] and selection.label_disagreements == [(wrong, entry.label)]


def test_broken_list_is_named():
    with pytest.raises(ValueError, match="line 2: expected dataset,subject,clip,label"):
        load_composite_list("casme2,sub01,EP02_01f,1\r\ncasme2,sub01,EP19_05f,7\r\n")
