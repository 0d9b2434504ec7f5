"""Trainers and `export` read only shards that pass the one manifest-opening check; a re-run verifies
the checkpoints it would skip; identical runs write identical bytes; options are checked at the CLI.
Every refusal is one line and exit status 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_run import run_mertk
from mertk.shards.layout import MANIFEST_NAME
from mertk.training.mer import MerTrainConfig, train_mer
from mertk.training.synthetic import write_synthetic_unimer

TINY_MER = ["--epochs", "1", "--batch-size", "8", "--hidden", "8", "--semantic-encoder", "region-stats", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def unimer_dir(tmp_path_factory) -> Path:
    return write_synthetic_unimer(tmp_path_factory.mktemp("unimer") / "unimer", subjects=3, per_subject=5, seed=2)


def flipped_copy(source: Path, target: Path) -> Path:
    """A copy of a shard directory with one byte of its first shard changed (manifest untouched)."""
    shutil.copytree(source, target)
    shard = sorted(target.glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return target


def other_schema_copy(source: Path, target: Path) -> Path:
    """A copy whose manifest claims another schema."""
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["schema"] = "mer_prediction.v1"
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


def assert_one_line(status: int, output: str, *expected: str) -> None:
    assert status == 2, output
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, output
    for text in expected:
        assert text in error_lines[0], output


@pytest.mark.parametrize("command", ["train-mer", "export"])
def test_edited_or_foreign_unimer_shards_are_refused(command, unimer_dir, tmp_path, monkeypatch, capsys):
    def run(directory: Path) -> tuple[int, str]:
        if command == "export":
            return run_mertk(monkeypatch, capsys, "export", directory, "--out", tmp_path / "export")
        return run_mertk(monkeypatch, capsys, "train", "mer", directory, "--out", tmp_path / "run", *TINY_MER)

    flipped = flipped_copy(unimer_dir, tmp_path / "flipped")
    status, output = run(flipped)
    assert_one_line(status, output, "unimer_sample-00000.parquet", "content differs from _manifest.json")
    status, output = run(other_schema_copy(unimer_dir, tmp_path / "foreign"))
    assert_one_line(status, output, "holds mer_prediction.v1 shards; expected unimer_sample")
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "export").exists()


def test_edited_or_foreign_pseudo_labels_are_refused_by_train_avvp(tmp_path, monkeypatch, capsys):
    from mertk.sample_data.llp import make_sample_llp

    llp = tmp_path / "llp"
    try:
        make_sample_llp(llp, train=4, val=2, test=2, progress=False)
    except Exception as error:  # noqa: BLE001 - the sample LLP needs its annotation source
        pytest.skip(f"sample LLP corpus unavailable here: {error}")
    status, output = run_mertk(monkeypatch, capsys, "migrate-labels", "--llp", llp, "--out", tmp_path / "migrated")
    assert status == 0, output
    labels = tmp_path / "migrated" / "avvp_pseudo"
    args = ["--llp", llp, "--out", tmp_path / "run", "--epochs", "1", "--d-model", "8", "--device", "cpu", "--threads", "1"]
    status, output = run_mertk(monkeypatch, capsys, "train", "avvp", "--labels", flipped_copy(labels, tmp_path / "flipped"), *args)
    assert_one_line(status, output, "content differs from _manifest.json")
    status, output = run_mertk(monkeypatch, capsys, "train", "avvp", "--labels", other_schema_copy(labels, tmp_path / "foreign"), *args)
    assert_one_line(status, output, "holds mer_prediction.v1 shards; expected avvp_pseudo_label")


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--lr", "-1", "--lr"),
        ("--lr", "0", "must be > 0"),
        ("--epochs", "0", "--epochs"),
        ("--batch-size", "0", "--batch-size"),
        ("--dropout", "1.5", "in [0, 1)"),
        ("--align-weight", "-0.1", "must be >= 0"),
        ("--protocol", "7class", "'7class' is not one of 5class, 3class"),
        ("--test-inputs", "labels", "is not one of video, oracle-au"),
        ("--semantic-encoder", "bert", "is not one of auto, minilm, region-stats"),
        ("--experts", "colour", "subset of structure,texture,semantics"),
        ("--device", "tpu", "is not one of auto, cpu, cuda"),
    ],
)
def test_bad_option_values_are_one_line_and_status_2(option, value, expected, unimer_dir, tmp_path, monkeypatch, capsys):
    status, output = run_mertk(monkeypatch, capsys, "train", "mer", unimer_dir, "--out", tmp_path / "run", option, value)
    assert status == 2 and "Traceback" not in output
    error_line = [line for line in output.splitlines() if line.startswith("error:")]  # mertk.cli.failures: one line
    assert len(error_line) == 1 and expected in error_line[0], output
    assert not (tmp_path / "run").exists()


def test_avvp_option_values_are_checked(tmp_path, monkeypatch, capsys):
    for option, value in (("--lr", "-1"), ("--threshold", "1"), ("--tie-mode", "push"), ("--features", "vgg")):
        status, output = run_mertk(monkeypatch, capsys, "train", "avvp", "--llp", tmp_path, "--labels", "none", "--out", tmp_path / "run", option, value)
        assert status == 2 and option in output and "Traceback" not in output


def tiny(unimer: Path, out: Path, **overrides) -> MerTrainConfig:
    settings = dict(epochs=1, batch_size=8, hidden=8, semantic_encoder="region-stats", device="cpu", progress=False, threads=1)
    return MerTrainConfig(unimer_dir=unimer, out=out, **{**settings, **overrides})


def run_files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_identical_runs_write_identical_bytes_everywhere(unimer_dir, tmp_path):
    train_mer(tiny(unimer_dir, tmp_path / "a"))
    train_mer(tiny(unimer_dir, tmp_path / "b"))
    first, second = run_files(tmp_path / "a"), run_files(tmp_path / "b")
    assert set(first) == set(second)
    assert {"checkpoints/fold-sub01.safetensors", "metrics.json", "predictions.parquet", "_report.html", "_state/fold-sub01.json"} <= set(first)
    timing_only = {"_throughput.json"}  # samples per second: the one figure that cannot repeat
    differing = sorted(name for name in first if first[name] != second[name] and name not in timing_only)
    assert differing == []


def test_damaged_fold_checkpoint_is_noticed_and_that_fold_retrained(unimer_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train_mer(tiny(unimer_dir, run))
    before = run_files(run)
    checkpoint = run / "checkpoints" / "fold-sub02.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    checkpoint.write_bytes(bytes(data))
    (run / "checkpoints" / "fold-sub03.safetensors").unlink()
    capsys.readouterr()

    steps: list[int] = []
    train_mer(tiny(unimer_dir, run), after_step=steps.append)
    output = " ".join(capsys.readouterr().err.split())
    assert "fold-sub02.safetensors: damaged" in output and "training fold sub02 again" in output
    assert "fold-sub03.safetensors: missing" in output
    assert steps, "the damaged folds were not trained again"
    after = run_files(run)
    assert after["checkpoints/fold-sub02.safetensors"] == before["checkpoints/fold-sub02.safetensors"]
    assert after["checkpoints/fold-sub03.safetensors"] == before["checkpoints/fold-sub03.safetensors"]
    assert after["predictions.parquet"] == before["predictions.parquet"]


def test_damaged_final_checkpoint_is_retrained(unimer_dir, tmp_path, capsys):
    run = tmp_path / "final"
    train_mer(tiny(unimer_dir, run, final=True))
    checkpoint = run / "checkpoints" / "final.safetensors"
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(original[: len(original) // 2])  # truncated
    capsys.readouterr()
    train_mer(tiny(unimer_dir, run, final=True))
    assert "final.safetensors: damaged" in " ".join(capsys.readouterr().err.split())
    assert checkpoint.read_bytes() == original
