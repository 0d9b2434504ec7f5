"""SMIC-HS reader on the real folder layout: labels from folders, padded and unpadded names, broken twins."""
from __future__ import annotations

from pathlib import Path

import pytest
from mer_sheets import frames

from mertk.corpora.mer import CorpusLayoutError
from mertk.corpora.smic import read_smic


def clip(root: Path, subject: str, emotion: str, name: str, numbers=range(101, 111), kind: str = "micro") -> None:
    frames(root / "HS" / subject / kind / emotion / name, [f"image{n:06d}.bmp" for n in numbers])


def test_layout_labels_and_names(tmp_path):
    clip(tmp_path, "s3", "negative", "s3_ne_03")
    clip(tmp_path, "s3", "positive", "s3_po_1", range(5, 9))
    clip(tmp_path, "s03", "surprise", "s03_sur_02", range(40, 50))  # another spelling of subject 3
    clip(tmp_path, "s12", "negative", "s12_ne_10")
    clip(tmp_path, "s3", "negative", "s3_ne_99", kind="non_micro")  # not a sample
    listing = read_smic(tmp_path)
    assert listing.rejections == [] and listing.sheet is None
    ids = [s.sample_id for s in listing.samples]
    assert ids == ["s03_ne_03", "s03_po_01", "s03_sur_02", "s12_ne_10"]
    first = listing.samples[0]
    assert (first.dataset, first.subject, first.clip, first.qualified_id, first.fps) == ("smic", "s03", "s03_ne_03", "smic/s03_ne_03", 100.0)
    assert (first.onset_frame, first.apex_frame, first.offset_frame) == (101, None, 110)
    assert "no apex" in first.apex_note and first.frame_path(105).name == "image000105.bmp"
    assert first.au_labels == () and not first.has_au_coding and not first.au_uncertain
    assert [(s.emotion, s.emotion_3class) for s in listing.samples] == [
        ("negative", "negative"), ("positive", "positive"), ("surprise", "surprise"), ("negative", "negative"),
    ]


def test_broken_clips_are_rejected_with_reasons(tmp_path):
    clip(tmp_path, "s1", "negative", "s1_ne_01")
    clip(tmp_path, "s1", "negative", "s1_po_02")  # name says positive
    clip(tmp_path, "s1", "happy", "s1_po_03")  # not one of the three folders
    clip(tmp_path, "s1", "surprise", "s1_sur_01", range(7, 8))  # a single frame
    clip(tmp_path, "s01", "negative", "s01_ne_01")  # the same clip under the padded name
    clip(tmp_path, "s1", "positive", "clip_a")  # not a SMIC clip name
    listing = read_smic(tmp_path)
    assert [s.sample_id for s in listing.samples] == ["s01_ne_01"]
    reasons = {r.input: r.reason for r in listing.rejections}
    assert "is named positive but lies in the negative folder" in reasons["s01/s1_po_02"]
    assert "emotion folder 'happy' is not one of negative, positive, surprise" in reasons["s01/s1_po_03"]
    assert "1 image<frame>.bmp frame(s) in HS/s1/micro/surprise/s1_sur_01" in reasons["s01/s1_sur_01"]
    assert "repeats clip s01_ne_01" in reasons["s01/s1_ne_01"]
    assert "is not s<subject>_<ne|po|sur>_<number>" in reasons["s01/clip_a"]
    assert all(r.reason.startswith("HS/") for r in listing.rejections)  # names the folder
    assert len(listing.samples) + len(listing.rejections) == 6


def test_not_a_smic_folder(tmp_path):
    with pytest.raises(CorpusLayoutError, match="SMIC-HS expected"):
        read_smic(tmp_path / "absent")
    (tmp_path / "SAMM" / "006").mkdir(parents=True)
    (tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx").write_bytes(b"")
    with pytest.raises(CorpusLayoutError, match="not a SMIC-HS folder: expected HS/<subject>/micro/.*the folder has SAMM, SAMM_Micro_FACS_Codes_v2.xlsx"):
        read_smic(tmp_path)
