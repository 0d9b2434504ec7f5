"""Sample-corpus generators write only into an empty folder or over their own earlier corpus."""
from __future__ import annotations

import pytest

from mertk.sample_data.folder import INFO_NAME, SampleDataError, prepare_sample_folder

OWNED = ("frames", "sheet.xlsx")


def test_an_empty_or_new_folder_is_used(tmp_path):
    assert prepare_sample_folder(tmp_path / "new" / "deeper", OWNED, "test").is_dir()
    assert prepare_sample_folder(tmp_path / "new" / "deeper", OWNED, "test") == tmp_path / "new" / "deeper"


def test_a_folder_with_other_content_is_refused_untouched(tmp_path):
    (tmp_path / "AVVP_train.csv").write_text("real annotations")
    with pytest.raises(SampleDataError, match="not a generated sample corpus"):
        prepare_sample_folder(tmp_path, OWNED, "test")
    assert (tmp_path / "AVVP_train.csv").read_text() == "real annotations"


def test_an_earlier_corpus_is_replaced_but_not_when_something_else_was_added(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "img1.jpg").write_bytes(b"x")
    (tmp_path / "sheet.xlsx").write_bytes(b"x")
    (tmp_path / INFO_NAME).write_text("{}")
    (tmp_path / "my_notes.txt").write_text("mine")
    with pytest.raises(SampleDataError, match="my_notes.txt"):
        prepare_sample_folder(tmp_path, OWNED, "test")
    assert (tmp_path / "frames" / "img1.jpg").is_file() and (tmp_path / "my_notes.txt").is_file()

    (tmp_path / "my_notes.txt").unlink()
    prepare_sample_folder(tmp_path, OWNED, "test")
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "corpus").write_text("a file")
    with pytest.raises(SampleDataError, match="not a folder"):
        prepare_sample_folder(tmp_path / "corpus", OWNED, "test")
