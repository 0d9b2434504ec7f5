"""`mertk migrate-labels` end to end on a generated 40-video corpus: quality, validate, rejections, resume."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mertk.pipelines.label_migration as label_migration
from mertk.cli.app import app
from mertk.migration.config import MigrationConfig, VideoUnit
from mertk.migration.evaluate import dense_truth
from mertk.pipelines.label_migration import migrate_labels
from mertk.sample_data.llp import make_sample_llp
from mertk.shards.dataset import read_shards
from tests.conftest import invoke_mertk

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llp40")
    make_sample_llp(out, seed=0, train=24, val=8, test=8, progress=False)
    return out


def run_cli(*args: str):
    return invoke_mertk("migrate-labels", *args)


def manifest(out: Path, folder: str = "avvp_pseudo") -> dict:
    return json.loads((out / folder / "_manifest.json").read_text())


def gains(data: dict, split: str) -> dict[str, float]:
    scores = data["summary"]["scores"][split]
    return {k: scores["pseudo"]["segment"][k] - scores["naive"]["segment"][k] for k in ("audio", "visual", "type")}


def test_han_end_to_end_beats_naive_and_validates(corpus: Path, tmp_path: Path):
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = manifest(tmp_path)
    assert data["inputs_seen"] == 40 and data["inputs_written"] == 40 and data["rows_written"] == 800
    assert data["parameters"]["features"] == "han" and "Speech" in data["summary"]["thresholds"]["audio"]
    # 24 train videos give few single-label prototypes per class: better than naive, not by 10
    # points (the 10-point goal on the 320-video sample is the slow test below).
    for split in ("train", "test"):
        assert min(gains(data, split).values()) > 0, (split, gains(data, split))
    table = read_shards(tmp_path / "avvp_pseudo")
    weak = {line.split("\t")[0]: set(line.split("\t")[1].split(",")) for line in (corpus / "AVVP_dataset_full.csv").read_text().splitlines()[1:]}
    for filename, labels, scores in zip(*(table.column(c).to_pylist() for c in ("filename", "labels", "scores"))):
        assert set(labels) <= weak[filename]  # a class outside the weak label never migrates
        assert len(scores) == 25 and 0 <= min(scores) and max(scores) <= 1
    report = (tmp_path / "avvp_pseudo" / "_report.html").read_text()
    assert "Segment Type@AV" in report and "data:image/png;base64" in report
    validate = runner.invoke(app, ["validate", str(tmp_path)])
    assert validate.exit_code == 0, validate.output


def test_language_aligned_features_with_text_anchors(corpus: Path, tmp_path: Path):
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path), "--features", "clip",
                     "--text-anchors", str(corpus / "text_anchors.safetensors"))
    assert result.exit_code == 0, result.output
    data = manifest(tmp_path)
    assert data["summary"]["anchors"] == {"audio": "text (file)", "visual": "text (file)"}
    for split in ("train", "test"):
        assert min(gains(data, split).values()) > 0, (split, gains(data, split))
    assert gains(data, "train")["type"] >= 10


def test_clip_checkpoint_anchors_and_dimension_mismatch(corpus: Path, tmp_path: Path):
    from tests.test_migration_methods import tiny_clip_checkpoint

    checkpoint = tiny_clip_checkpoint(tmp_path / "clip768.pt", embed_dim=768)
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path / "a"), "--features", "clip", "--clip-checkpoint", str(checkpoint))
    assert result.exit_code == 0, result.output
    anchors = manifest(tmp_path / "a")["summary"]["anchors"]
    assert anchors["visual"] == "text (CLIP checkpoint)" and anchors["audio"]["kind"] == "prototypes"
    small = tiny_clip_checkpoint(tmp_path / "clip48.pt", embed_dim=48)
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path / "b"), "--features", "clip", "--clip-checkpoint", str(small))
    assert result.exit_code == 2 and "dimension 48" in result.output


def break_corpus(corpus: Path, target: Path) -> dict[str, str]:
    """Copy the HAN part of the corpus and break one file of four videos in four ways."""
    for name in corpus.glob("*.csv"):
        shutil.copy(name, target / name.name)
    shutil.copytree(corpus / "feats", target / "feats")
    ids = sorted(p.stem for p in (target / "feats" / "vggish").glob("*.npy"))
    filenames = {line.split("\t")[0][:11]: line.split("\t")[0] for line in (corpus / "AVVP_dataset_full.csv").read_text().splitlines()[1:]}
    (target / "feats" / "vggish" / f"{ids[0]}.npy").unlink()
    res152 = target / "feats" / "res152" / f"{ids[1]}.npy"
    res152.write_bytes(res152.read_bytes()[:1000])
    np.save(target / "feats" / "r2plus1d_18" / f"{ids[2]}.npy", np.zeros((10, 500), dtype=np.float32))
    bad = np.load(target / "feats" / "vggish" / f"{ids[3]}.npy")
    bad[4, 0] = np.inf
    np.save(target / "feats" / "vggish" / f"{ids[3]}.npy", bad)
    return {
        filenames[ids[0]]: "missing feature file",
        filenames[ids[1]]: "truncated or not a .npy array",
        filenames[ids[2]]: "shape (10, 500), expected (10, 512)",
        filenames[ids[3]]: "non-finite values",
    }


def test_each_rejection_case_is_recorded_and_the_run_goes_on(corpus: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    expected = break_corpus(corpus, broken)
    result = run_cli("--llp", str(broken), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    data = manifest(tmp_path / "out")
    assert data["inputs_seen"] == 40 and data["inputs_written"] == 36 and data["inputs_rejected"] == 4
    by_input = {r["input"]: r for r in data["rejections"]}
    for filename, reason in expected.items():
        assert reason in by_input[filename]["reason"] and filename in by_input[filename]["reason"]
        assert by_input[filename]["file"].endswith(".npy")
    assert runner.invoke(app, ["validate", str(tmp_path / "out")]).exit_code == 0


def test_nothing_usable_is_a_clear_error(tmp_path: Path):
    (tmp_path / "AVVP_train.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\n")
    result = run_cli("--llp", str(tmp_path), "--out", str(tmp_path / "out"))
    output = result.output.replace("\n", "")  # the console wraps long lines
    assert result.exit_code == 2 and "no video has usable han features" in output and "missing feature file" in output
    missing = run_cli("--llp", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert missing.exit_code == 2 and "not a folder" in missing.output.replace("\n", "")
    assert run_cli("--llp", str(tmp_path), "--features", "vgg").exit_code == 2
    assert run_cli("--llp", str(tmp_path), "--calibrate", "test").exit_code == 2
    assert run_cli("--llp", str(tmp_path), "--threshold-rule", "median").exit_code == 2
    for option, value in (("--workers", "0"), ("--neighbours", "0"), ("--refine", "-1"), ("--fit-videos", "-5")):
        refused = run_cli("--llp", str(tmp_path), option, value)
        assert refused.exit_code == 2 and option in refused.output, (option, refused.output)
    sample = invoke_mertk("sample-data", "llp", "--out", str(tmp_path / "s"), "--videos", "0")
    assert sample.exit_code == 2 and "--videos" in sample.output and not (tmp_path / "s").exists()


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_interrupted_run_resumes_to_the_same_bytes(corpus: Path, tmp_path: Path, monkeypatch):
    config = MigrationConfig(shard_videos=8)
    migrate_labels(corpus, tmp_path / "whole", config, progress=False)
    original = label_migration.label_shard
    calls = {"n": 0}

    def failing(context, units):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(context, units)

    monkeypatch.setattr(label_migration, "label_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        migrate_labels(corpus, tmp_path / "resumed", config, progress=False)
    assert len(digests(tmp_path / "resumed" / "avvp_pseudo")) == 2  # two shards were complete
    monkeypatch.setattr(label_migration, "label_shard", original)
    migrate_labels(corpus, tmp_path / "resumed", config, progress=False)
    whole, resumed = digests(tmp_path / "whole" / "avvp_pseudo"), digests(tmp_path / "resumed" / "avvp_pseudo")
    assert len(whole) == 5 and whole == resumed
    strip = lambda d: {k: v for k, v in d.items() if k != "versions"}  # noqa: E731
    assert strip(manifest(tmp_path / "whole")) == strip(manifest(tmp_path / "resumed"))
    assert not (tmp_path / "resumed" / "avvp_pseudo" / "_state" / "segments").exists()  # cache removed


def test_rerun_with_other_parameters_is_refused(corpus: Path, tmp_path: Path):
    assert run_cli("--llp", str(corpus), "--out", str(tmp_path)).exit_code == 0
    again = run_cli("--llp", str(corpus), "--out", str(tmp_path), "--refine", "0")
    assert again.exit_code == 2 and "other parameters" in again.output


def test_calibrate_val_fits_thresholds_on_val(corpus: Path, tmp_path: Path):
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path), "--calibrate", "val", "--workers", "2")
    assert result.exit_code == 0, result.output
    rules = manifest(tmp_path)["summary"]["threshold_rules"]
    assert "calibrated on val" in rules["audio"].values() and "calibrated on val" in rules["visual"].values()
    assert min(gains(manifest(tmp_path), "test").values()) > 0


def test_target_corpus_recovers_planted_labels_better_than_chance(corpus: Path, tmp_path: Path):
    target = tmp_path / "target"
    make_sample_llp(target, seed=5, train=16, val=0, test=0, progress=False)
    vocabulary = tmp_path / "vocab.json"
    vocabulary.write_text(json.dumps({"Cat": None}))
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path / "out"), "--target", str(target), "--vocabulary", str(vocabulary))
    assert result.exit_code == 0, result.output
    data = manifest(tmp_path / "out", "avvp_target")
    assert data["inputs_written"] == 16 and data["rows_written"] == 320
    knn, chance = data["summary"]["knn"]["segment"], data["summary"]["chance"]["segment"]
    assert knn["type"] > chance["type"] + 20, (knn, chance)
    table = read_shards(tmp_path / "out" / "avvp_target")
    assert set(table.column("split").to_pylist()) == {"target"}
    assert "Cat" not in {label for labels in table.column("labels").to_pylist() for label in labels}
    assert runner.invoke(app, ["validate", str(tmp_path / "out")]).exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize("features", ["han", "clip"])
def test_sample_corpus_gains_at_least_ten_points(tmp_path_factory, features: str):
    """The done-when figures: on the default 320-video sample, each of segment audio F1, visual F1
    and Type@AV at least 10 points above the naive baseline, on train (full truth) and test."""
    corpus = tmp_path_factory.mktemp("llp320")
    make_sample_llp(corpus, progress=False)
    anchors = str(corpus / "text_anchors.safetensors") if features == "clip" else None
    result = migrate_labels(corpus, tmp_path_factory.mktemp("out"), MigrationConfig(features=features, text_anchors=anchors), progress=False)
    for split in ("train", "test"):
        scores = result.scores[split]
        for key in ("audio", "visual", "type"):
            assert scores["pseudo"]["segment"][key] - scores["naive"]["segment"][key] >= 10, (split, key)


def test_fit_sample_is_even_and_keeps_val_when_calibrating():
    from mertk.migration.config import VideoUnit
    from mertk.migration.fit import fit_sample

    units = [VideoUnit(i, f"v{i:010d}_0_10", f"v{i:010d}", "val" if i % 7 == 0 else "train", (0,)) for i in range(100)]
    assert list(fit_sample(units, 0, "none")) == list(range(100))
    assert list(fit_sample(units, 200, "none")) == list(range(100))
    sample = fit_sample(units, 10, "none")
    assert len(sample) == 10 and sample[0] == 0 and sample[-1] == 99 and list(sample) == sorted(sample)
    calibrating = fit_sample(units, 10, "val")
    assert {i for i in range(100) if i % 7 == 0} <= set(calibrating.tolist())


def test_fitting_on_a_sample_still_labels_every_video(corpus: Path, tmp_path: Path):
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path), "--fit-videos", "20", "--threshold-rule", "otsu")
    assert result.exit_code == 0, result.output
    data = manifest(tmp_path)
    assert data["summary"]["fit_videos"] == 20 and data["parameters"]["fit_videos"] == 20
    assert set(data["summary"]["threshold_rules"]["audio"].values()) <= {"label-free (otsu)", "never (class absent)"}
    assert data["inputs_written"] == 40 and data["rows_written"] == 800


@pytest.mark.parametrize("truth", ["ground_truth", "eval"])
def test_dense_truth_read_once_equals_each_split_read_alone(corpus: Path, tmp_path: Path, truth: str):
    from mertk.corpora.llp_annotations import read_dense_labels
    from mertk.corpora.llp_features import read_llp_videos

    root = tmp_path / "llp"
    root.mkdir()
    for path in corpus.glob("*.csv"):
        shutil.copy(path, root / path.name)
    if truth == "eval":
        for name in ("ground_truth_audio.csv", "ground_truth_visual.csv"):
            (root / name).unlink()
    videos = read_llp_videos(root).videos
    units = [VideoUnit(i, v.filename, v.video_id, v.split, v.label_indices) for i, v in enumerate(videos)]
    by_split = {split: [u.filename for u in units if u.split == split] for split in ("train", "val", "test")}
    files = {m: root / (f"ground_truth_{m}.csv" if truth == "ground_truth" else f"AVVP_eval_{m}.csv") for m in ("audio", "visual")}
    # Defects of every kind, for videos of each split (val and test carry eval rows in both layouts).
    extra = [
        f"{by_split['val'][0]}\t5\t5\tDog", f"{by_split['test'][0]}\t6\t2\tSpeech", f"{by_split['test'][1]}\t-1\t3\tCat",
        f"{by_split['val'][1]}\t8\t12\tSinging", "NoSuchVideo_0_10\t0\t3\tDog", f"{by_split['val'][2]}\tx\t3\tDog",
        f"{by_split['test'][2]}\t1\t3\tNot_a_class", f"{by_split['train'][0]}\t4\t4\tDog", "too\tfew",
    ]
    with open(files["audio"], "a", encoding="utf-8") as handle:
        handle.write("\n".join(extra) + "\n")
    with open(files["visual"], "a", encoding="utf-8") as handle:
        handle.write("\n".join(extra[1::2]) + "\n")

    once = dense_truth(root, units)
    assert set(once) == ({"train", "val", "test"} if truth == "ground_truth" else {"val", "test"})
    for split, (rows, dense, _) in once.items():
        others = [u.filename for u in units if u.split != split]
        alone = read_dense_labels(files["audio"], files["visual"], [units[r].filename for r in rows], others)
        assert dense.filenames == alone.filenames
        assert np.array_equal(dense.audio_v_c_t, alone.audio_v_c_t) and np.array_equal(dense.visual_v_c_t, alone.visual_v_c_t)
        assert dense.defects == alone.defects, split
        assert alone.defects.total > 0


def test_splits_scored_while_labelling_equal_the_scores_computed_at_the_end(corpus: Path, tmp_path: Path, monkeypatch):
    config = MigrationConfig(shard_videos=8)
    scored_early: list[str] = []
    original = label_migration.evaluate_splits

    def spy(root, out_dir, units, labelled=None, baseline=None, early=None):
        scored_early.extend(early.futures if early is not None else [])
        return original(root, out_dir, units, labelled, baseline, early)

    monkeypatch.setattr(label_migration, "evaluate_splits", spy)
    with_early = migrate_labels(corpus, tmp_path / "early", config, progress=False)
    monkeypatch.setattr(label_migration, "evaluate_splits", lambda *args: original(*args[:5]))
    at_end = migrate_labels(corpus, tmp_path / "end", config, progress=False)
    assert "train" in scored_early  # 3 train shards, then 2 more: train is scored while they are labelled
    # As JSON: per-class F1 of a class absent from a split is NaN, which never equals itself.
    assert json.dumps(with_early.scores, sort_keys=True) == json.dumps(at_end.scores, sort_keys=True)
    assert manifest(tmp_path / "early")["summary"] == manifest(tmp_path / "end")["summary"]


def run_mertk_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m mertk ARGS` in a fresh process, as a user runs it (the real failure handler)."""
    return subprocess.run([sys.executable, "-m", "mertk", *args], capture_output=True, text=True, cwd=cwd)


def test_damaged_state_file_is_one_line_and_the_shard_is_redone(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert run_cli("--llp", str(corpus), "--out", str(out)).exit_code == 0
    whole = digests(out / "avvp_pseudo")
    (state,) = sorted((out / "avvp_pseudo" / "_state").glob("*.json"))
    for damage in ('{"fingerprint": ', json.dumps({"sha256": "x"})):  # truncated; valid JSON but not what a run writes
        state.write_text(damage)
        done = run_mertk_process("migrate-labels", "--llp", str(corpus), "--out", str(out), cwd=tmp_path)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        lines = [line for line in done.stderr.splitlines() if str(state) in line]
        assert len(lines) == 1 and "damaged state file" in lines[0], done.stderr
        assert digests(out / "avvp_pseudo") == whole
        assert json.loads(state.read_text())["sha256"] != "x"  # rewritten


def test_unwritable_out_is_one_line(corpus: Path, tmp_path: Path, monkeypatch):
    """In process: the output folder refuses the write (a read-only disk, or permissions)."""
    original = Path.mkdir

    def refuse(self, *args, **kwargs):
        if "readonly" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = run_cli("--llp", str(corpus), "--out", str(tmp_path / "readonly"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"error: {tmp_path / 'readonly' / 'avvp_pseudo'}: permission denied (is the output folder writable?)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file permissions do not stop root (or non-POSIX systems)")
def test_read_only_out_through_the_command_is_one_line(corpus: Path, tmp_path: Path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        done = run_mertk_process("migrate-labels", "--llp", str(corpus), "--out", str(out), cwd=tmp_path)
    finally:
        out.chmod(0o755)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "permission denied" in errors[0] and str(out) in errors[0]
