"""`mertk sample-data llp`: real layout, shapes and dtypes, real CSV rows, truth that the features carry."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mertk.cli.app import app
from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, read_dense_labels, read_weak_labels
from mertk.corpora.llp_features import pool_to_segments
from mertk.migration.anchors import load_text_anchors
from mertk.sample_data.folder import SampleDataError
from tests.conftest import invoke_mertk
from mertk.sample_data.llp import (
    FEATURE_SPECS,
    PACKAGED_LLP,
    annotation_source,
    make_sample_llp,
    make_world,
    split_sizes,
)

runner = CliRunner()
SIZES = dict(train=8, val=4, test=4)


@pytest.fixture(scope="module")
def real_llp() -> Path:
    """The real LLP annotation CSVs as the package ships them (unpacked)."""
    with annotation_source(None) as folder:
        yield folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llp")
    make_sample_llp(out, seed=3, progress=False, **SIZES)
    return out


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_layout_shapes_and_dtypes(corpus: Path):
    for name in ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv", "AVVP_dataset_full.csv",
                 "AVVP_eval_audio.csv", "AVVP_eval_visual.csv", "ground_truth_audio.csv",
                 "ground_truth_visual.csv", "text_anchors.safetensors"):
        assert (corpus / name).is_file(), name
    videos = read_weak_labels(corpus / "AVVP_dataset_full.csv", "full")
    assert len(videos) == 16
    expected = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512), "clip": (10, 768), "clap": (10, 768)}
    for spec in FEATURE_SPECS:
        files = sorted((corpus / spec.folder).glob("*.npy"))
        assert [f.stem for f in files] == sorted(v.video_id for v in videos)
        array = np.load(files[0])
        assert array.shape == expected[spec.name] and array.dtype == np.float32
        assert np.isfinite(array).all()
        if spec.name == "res152":
            assert (array >= 0).all()


def test_csvs_are_real_rows(corpus: Path, real_llp: Path):
    for split, name in (("train", "AVVP_train.csv"), ("val", "AVVP_val_pd.csv"), ("test", "AVVP_test_pd.csv")):
        real = (real_llp / name).read_text().splitlines()
        sample = (corpus / name).read_text().splitlines()
        assert sample[0] == real[0] == "filename\tevent_labels"
        assert sample[1:] == real[1 : 1 + SIZES[split]]  # a prefix, verbatim
    eval_lines = (corpus / "AVVP_eval_audio.csv").read_text().splitlines()
    real_eval = set((real_llp / "AVVP_eval_audio.csv").read_text().splitlines())
    assert set(eval_lines) <= real_eval
    # The real defects stay: rows naming no val/test video, and onset >= offset rows of kept videos.
    listed = {line.split("\t")[0] for name in ("AVVP_val_pd.csv", "AVVP_test_pd.csv") for line in (real_llp / name).read_text().splitlines()[1:]}
    assert any(line.split("\t")[0] not in listed for line in eval_lines[1:])


def test_val_test_truth_is_the_real_dense_annotation(corpus: Path, real_llp: Path):
    weak = read_weak_labels(corpus / "AVVP_val_pd.csv", "val") + read_weak_labels(corpus / "AVVP_test_pd.csv", "test")
    real = read_dense_labels(real_llp / "AVVP_eval_audio.csv", real_llp / "AVVP_eval_visual.csv", weak)
    everyone = [v.filename for v in read_weak_labels(corpus / "AVVP_dataset_full.csv", "full")]
    truth = read_dense_labels(corpus / "ground_truth_audio.csv", corpus / "ground_truth_visual.csv", weak, everyone)
    assert np.array_equal(real.audio_v_c_t, truth.audio_v_c_t)
    assert np.array_equal(real.visual_v_c_t, truth.visual_v_c_t)
    assert truth.defects.total == 0  # the written truth itself is clean


def test_train_truth_stays_within_weak_labels_and_covers_each(corpus: Path):
    weak = read_weak_labels(corpus / "AVVP_train.csv", "train")
    everyone = [v.filename for v in read_weak_labels(corpus / "AVVP_dataset_full.csv", "full")]
    truth = read_dense_labels(corpus / "ground_truth_audio.csv", corpus / "ground_truth_visual.csv", weak, everyone)
    assert truth.defects.total == 0
    for row, record in enumerate(weak):
        present = truth.audio_v_c_t[row].any(axis=1) | truth.visual_v_c_t[row].any(axis=1)
        assert set(np.flatnonzero(present)) == set(record.label_indices)


def test_event_segments_carry_their_class_direction(corpus: Path):
    """Present segments lie closer to the class direction than absent segments of the same video."""
    world = make_world()
    weak = read_weak_labels(corpus / "AVVP_dataset_full.csv", "full")
    truth = read_dense_labels(corpus / "ground_truth_audio.csv", corpus / "ground_truth_visual.csv", weak)
    for spec in FEATURE_SPECS:
        gaps = []
        for row, record in enumerate(weak):
            array = np.load(corpus / spec.folder / f"{record.video_id}.npy").astype(np.float64)
            segments = pool_to_segments(array) if spec.frames != 10 else array
            matrix = truth.audio_v_c_t[row] if spec.modality == "audio" else truth.visual_v_c_t[row]
            for class_index in record.label_indices:
                on = matrix[class_index]
                if on.any() and (~on).any():
                    projection = segments @ world.directions[spec.name][class_index]
                    gaps.append(projection[on].mean() - projection[~on].mean())
        assert gaps and np.mean(gaps) > 0 and np.mean(np.array(gaps) > 0) > 0.8, spec.name


def test_same_seed_same_bytes_and_subsets_reproduce(corpus: Path, tmp_path: Path):
    again = tmp_path / "again"
    make_sample_llp(again, seed=3, progress=False, **SIZES)
    assert digests(again) == digests(corpus)
    subset = tmp_path / "subset"
    make_sample_llp(subset, seed=3, train=3, val=1, test=1, progress=False)
    for name, digest in digests(subset).items():
        if name.endswith(".npy"):
            assert digests(corpus)[name] == digest  # a video's content depends on (seed, filename) only
    other = tmp_path / "other"
    make_sample_llp(other, seed=4, train=2, val=0, test=0, progress=False)
    name = "feats/vggish/" + next((other / "feats/vggish").glob("*.npy")).name
    assert digests(other)[name] != digests(corpus)[name]  # another seed, other backgrounds and noise


def test_text_anchors_are_readable_and_match_the_features(corpus: Path):
    anchors = load_text_anchors(corpus / "text_anchors.safetensors")
    world = make_world()
    assert anchors["visual"].shape == (25, 768) and anchors["audio"].shape == (25, 768)
    speech = LLP_CLASS_INDEX["Speech"]
    similarity = anchors["visual"] @ world.directions["clip"].T
    assert similarity[speech, speech] > 0.5 and np.argmax(similarity[speech]) == speech


def test_split_sizes_at_llp_scale_and_bad_sizes():
    assert split_sizes(0, 0, 0, 11849) == {"train": 10000, "val": 649, "test": 1200}
    assert sum(split_sizes(0, 0, 0, 100).values()) == 100
    with pytest.raises(SampleDataError, match="--videos"):
        split_sizes(0, 0, 0, 20000)
    with pytest.raises(SampleDataError, match="--val"):
        split_sizes(1, 700, 1, None)


def test_cli_writes_corpus_and_rejects_bad_size(tmp_path: Path):
    result = runner.invoke(app, ["sample-data", "llp", "--out", str(tmp_path / "c"), "--train", "2", "--val", "1", "--test", "1", "--no-features"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "AVVP_train.csv").read_text().count("\n") == 3
    assert not (tmp_path / "c" / "feats").exists()
    bad = runner.invoke(app, ["sample-data", "llp", "--out", str(tmp_path / "d"), "--train", "20000"])
    assert bad.exit_code == 2 and "--train" in bad.output


def test_committed_sample_matches_the_generator(tmp_path: Path):
    committed = Path(__file__).resolve().parents[1] / "sample_data" / "llp"
    make_sample_llp(tmp_path, features=False, progress=False)
    for name in ("AVVP_train.csv", "AVVP_eval_visual.csv", "ground_truth_audio.csv", "text_anchors.safetensors"):
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_packaged_annotations_are_the_real_files(shared_data, real_llp: Path):
    shared = shared_data("llp")
    names = sorted(path.name for path in real_llp.glob("*.csv"))
    assert len(names) == 5 and len(list(PACKAGED_LLP.glob("*.csv.gz"))) == 5
    for name in names:
        assert (real_llp / name).read_bytes() == (shared / name).read_bytes(), name


def test_same_corpus_from_the_packaged_copy_and_from_the_real_folder(shared_data, tmp_path: Path):
    make_sample_llp(tmp_path / "packaged", seed=2, train=5, val=3, test=3, features=False, progress=False)
    make_sample_llp(tmp_path / "real", seed=2, train=5, val=3, test=3, features=False, progress=False, source=shared_data("llp"))
    assert digests(tmp_path / "packaged") == digests(tmp_path / "real")


def test_refuses_a_folder_with_content_it_did_not_write(tmp_path: Path):
    """Pointed at a folder of real annotations (or anything else), nothing there is touched."""
    real = tmp_path / "real_llp"
    real.mkdir()
    with annotation_source(None) as folder:
        for path in folder.glob("*.csv"):
            (real / path.name).write_bytes(path.read_bytes())
    (real / "feats" / "vggish").mkdir(parents=True)
    np.save(real / "feats" / "vggish" / "BjCEufrlXm4.npy", np.ones((10, 128), dtype=np.float32))
    before = digests(real)
    result = invoke_mertk("sample-data", "llp", "--out", str(real), "--train", "2", "--val", "1", "--test", "1")
    assert result.exit_code == 2 and "did not write" in result.output and "AVVP_eval_audio.csv" in result.output
    assert digests(real) == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(SampleDataError, match="todo.txt"):
        make_sample_llp(notes, train=2, val=1, test=1, features=False, progress=False)
    assert (notes / "todo.txt").read_text() == "mine" and len(list(notes.iterdir())) == 1


def test_rewrites_a_folder_it_wrote_and_the_committed_copy(tmp_path: Path):
    out = tmp_path / "c"
    make_sample_llp(out, seed=0, train=3, val=1, test=1, progress=False)
    first = digests(out)
    make_sample_llp(out, seed=0, train=3, val=1, test=1, progress=False)  # its own folder: accepted, same bytes
    assert digests(out) == first
    committed = Path(__file__).resolve().parents[1] / "sample_data" / "llp"
    copy = tmp_path / "committed"
    copy.mkdir()
    for path in committed.iterdir():
        if path.is_file() and path.name != "mertk_sample.json":  # a copy without the info file: accepted byte for byte
            (copy / path.name).write_bytes(path.read_bytes())
    make_sample_llp(copy, features=False, progress=False)
