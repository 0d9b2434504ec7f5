"""`mertk train generator` and the generator's labels: a tiny pre-training chain end to end
(sample LLP -> `--target` migration of a larger corpus -> generator -> LLP labelled by it -> parser),
determinism and resume, checkpoints of other features or classes refused, options checked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mertk.cli.app import app
from mertk.corpora.llp_annotations import LLP_CLASSES
from mertk.corpora.llp_features import feature_layout
from mertk.models.checkpoint import load_model_weights, save_model_weights
from mertk.models.generator import MODEL_NAME, GeneratorMismatchError, load_generator
from mertk.training.generator import GeneratorTrainConfig, split_videos, train_generator
from tests.conftest import invoke_mertk

TINY = ["--epochs", "2", "--batch-size", "16", "--hidden", "16", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """The tiny chain's inputs: an LLP sample, a 4x larger corpus labelled from it by `--target`."""
    from mertk.sample_data.llp import make_sample_llp

    root = tmp_path_factory.mktemp("chain")
    make_sample_llp(root / "llp", train=16, val=6, test=6, progress=False)
    make_sample_llp(root / "pre", seed=7, train=80, val=8, test=8, progress=False)
    result = CliRunner().invoke(app, ["migrate-labels", "--llp", str(root / "llp"), "--out", str(root / "migrated"), "--target", str(root / "pre")])
    assert result.exit_code == 0, result.output
    return {"root": root, "llp": root / "llp", "pre": root / "pre", "target": root / "migrated" / "avvp_target"}


@pytest.fixture(scope="module")
def generator_run(chain) -> Path:
    run = chain["root"] / "gen"
    result = CliRunner().invoke(app, ["train", "generator", "--labels", str(chain["target"]), "--exclude", str(chain["llp"]), "--out", str(run), *TINY])
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and "vs planted truth" in result.output
    return run


def test_generator_trains_on_migrated_labels_and_records_what_it_saw(chain, generator_run):
    metrics = json.loads((generator_run / "metrics.json").read_text())
    data = metrics["training_data"]
    # the pre-training corpus shares its first val/test filenames with the LLP sample: left out
    assert data["excluded_evaluation_videos"] == 12
    assert data["videos"]["train"] + data["videos"]["held_out"] == 96 - 12
    assert data["labels"][0]["corpus"] == str(chain["pre"]) and data["weak_labels"] == 84
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (0, 1)
    truth = metrics["held_out"]["truth"]
    assert set(truth["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
    _, config = load_model_weights(generator_run / "checkpoints" / "generator.safetensors", model=MODEL_NAME)
    assert config["features"] == "han" and config["parts"] == {"audio": ["vggish"], "visual": ["res152", "r2plus1d_18"]}
    assert config["classes"] == list(LLP_CLASSES) and config["training"]["pseudo_target"] == "hard"
    model = load_generator(generator_run / "checkpoints" / "generator.safetensors")
    output = model(torch.zeros(2, 10, 128), torch.zeros(2, 10, 2560))
    assert output.segment_bmtc.shape == (2, 2, 10, 25) and output.video_union_bc().shape == (2, 25)


def test_same_seed_same_bytes_and_an_interrupted_run_resumes_to_them(chain, tmp_path):
    def config(out: Path) -> GeneratorTrainConfig:
        return GeneratorTrainConfig(labels=[chain["target"]], out=out, epochs=2, batch_size=16, hidden=16, device="cpu",
                                    threads=1, progress=False, cache_dir=tmp_path / "cache", checkpoint_every=1)  # fmt: skip

    train_generator(config(tmp_path / "a"))

    def interrupt(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_generator(config(tmp_path / "b"), after_step=interrupt)
    assert not (tmp_path / "b" / "checkpoints").exists()
    train_generator(config(tmp_path / "b"))
    # safetensors orders its header's metadata as it likes: the weights and config are what must match
    (first, config_a), (second, config_b) = (load_model_weights(tmp_path / run / "checkpoints" / "generator.safetensors", model=MODEL_NAME) for run in ("a", "b"))
    assert config_a == config_b and first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    with pytest.raises(Exception, match="other parameters"):
        train_generator(GeneratorTrainConfig(**{**config(tmp_path / "b").__dict__, "lr": 5e-4}))


def test_weak_only_ablation_uses_no_segment_label(chain, tmp_path):
    from mertk.training.generator import generator_loss
    from mertk.models.generator import GeneratorOutput

    logits = torch.zeros(1, 2, 10, 25)
    output = GeneratorOutput(logits, torch.sigmoid(logits), torch.full((1, 2, 25), 0.5))
    batch = {"target": torch.ones(1, 2, 10, 25), "weak": torch.zeros(1, 25), "has_weak": torch.ones(1)}
    with_segments = generator_loss(output, batch, GeneratorTrainConfig(labels=[], out=tmp_path))
    weak_only = generator_loss(output, batch, GeneratorTrainConfig(labels=[], out=tmp_path, weak_only=True))
    # union of two 0.5 video probabilities = 0.75 against a weak label of 0: -log(0.25)
    assert float(weak_only) == pytest.approx(-np.log(0.25), rel=1e-5)
    assert float(with_segments) == pytest.approx(-np.log(0.25) + np.log(2), rel=1e-5)
    each = generator_loss(output, batch, GeneratorTrainConfig(labels=[], out=tmp_path, weak_only=True, weak_target="each"))
    assert float(each) == pytest.approx(np.log(2), rel=1e-5)  # each modality's 0.5 against 0
    inside = generator_loss(output, {**batch, "weak": torch.ones(1, 25)}, GeneratorTrainConfig(labels=[], out=tmp_path, weak_only=True))
    assert float(inside) == pytest.approx(-np.log(0.75), rel=1e-5)
    batch["has_weak"] = torch.zeros(1)
    assert float(generator_loss(output, batch, GeneratorTrainConfig(labels=[], out=tmp_path, weak_only=True))) == 0.0


def test_held_out_split_is_fixed_by_the_seed_and_never_empty():
    train, held = split_videos(10, 0.1, seed=3)
    assert len(held) == 1 and len(train) == 9 and not set(train) & set(held)
    assert np.array_equal(split_videos(10, 0.1, seed=3)[1], held)
    assert len(split_videos(2, 0.9, seed=0)[0]) == 1


def test_a_generator_of_other_features_or_classes_is_refused(generator_run, tmp_path):
    from mertk.migration.generator import load_labeller

    path = generator_run / "checkpoints" / "generator.safetensors"
    assert load_labeller(path, "generator", feature_layout("han")).combine == "generator"
    with pytest.raises(GeneratorMismatchError, match=r"trained on han features \(vggish \| res152\+r2plus1d_18\).*this run uses clip features"):
        load_labeller(path, "generator", feature_layout("clip"))
    with pytest.raises(GeneratorMismatchError, match=r"r2plus1d_18\), dims 128 \| 2560; this run uses han features \(vggish \| res152\)"):
        load_labeller(path, "generator", feature_layout("han", r2plus1d=False))
    state, config = load_model_weights(path, model=MODEL_NAME)
    foreign = tmp_path / "foreign.safetensors"
    save_model_weights(foreign, state, model=MODEL_NAME, config={**config, "classes": [*LLP_CLASSES[:24], "Didgeridoo"]})
    with pytest.raises(GeneratorMismatchError, match=r"25 classes, this run has 25 \(Clapping missing; Didgeridoo extra\); train one on these classes"):
        load_labeller(foreign, "generator", feature_layout("han"))
    parser_file = tmp_path / "parser.safetensors"
    save_model_weights(parser_file, state, model="avvp_hybrid_attention_parser", config={})
    with pytest.raises(ValueError, match="not 'avvp_pseudo_label_generator'"):
        load_labeller(parser_file, "generator", feature_layout("han"))


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["--lr", "0"], "--lr"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--pseudo-target", "fuzzy"], "--pseudo-target"),
        (["--context", "2"], "--context"),
        (["--segment-loss-weight", "-1"], "--segment-loss-weight"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(arguments, words, tmp_path):
    result = CliRunner().invoke(app, ["train", "generator", "--labels", str(tmp_path), "--out", str(tmp_path / "run"), *arguments])
    assert result.exit_code == 2 and words in result.output
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_label_directory_is_one_line(tmp_path):
    from mertk.cli.failures import describe
    from mertk.training.generator_data import read_generator_data

    with pytest.raises(Exception) as caught:
        read_generator_data([tmp_path], tmp_path / "cache", progress=False)
    message, status = describe(caught.value)
    assert status == 2 and str(tmp_path) in message and "\n" not in message


def test_llp_labelled_by_the_generator_then_the_parser_trains_on_it(chain, generator_run, tmp_path):
    from mertk.shards.dataset import open_shards

    checkpoint = generator_run / "checkpoints" / "generator.safetensors"
    folders = {}
    for combine in ("generator", "mean", "similarity"):
        out = tmp_path / combine
        result = CliRunner().invoke(app, ["migrate-labels", "--llp", str(chain["llp"]), "--out", str(out), "--generator", str(checkpoint), "--combine", combine])
        assert result.exit_code == 0, result.output
        folders[combine] = out / "avvp_pseudo"
        dataset = open_shards(folders[combine], "avvp_pseudo_label")
        assert dataset.manifest.parameters["generator"] == str(checkpoint) and dataset.manifest.parameters["combine"] == combine
        summary = dataset.manifest.summary
        assert summary["generator"]["combine"] == combine and summary["generator"]["trained_on"]["labels"][0]["corpus"] == str(chain["pre"])
        assert set(summary["scores"]["test"]["pseudo"]["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
        table = dataset.read(["filename", "labels", "scores"])
        assert table.num_rows == 28 * 20
    # similarity: today's labels, whatever the generator says; the generator's own labels differ from them
    plain = tmp_path / "plain"
    assert CliRunner().invoke(app, ["migrate-labels", "--llp", str(chain["llp"]), "--out", str(plain)]).exit_code == 0
    read = lambda folder: open_shards(folder).read(["labels", "scores"]).to_pydict()  # noqa: E731
    assert read(folders["similarity"]) == read(plain / "avvp_pseudo")
    assert read(folders["generator"]) != read(plain / "avvp_pseudo")
    # labels only inside the weak label, scores 0 outside it
    weak = {line.split("\t")[0]: set(line.split("\t")[1].split(",")) for line in (chain["llp"] / "AVVP_train.csv").read_text().splitlines()[1:]}
    rows = open_shards(folders["generator"]).read(["filename", "labels", "scores"]).to_pylist()
    for row in rows:
        if row["filename"] in weak:
            assert set(row["labels"]) <= weak[row["filename"]]
            assert all(score == 0 for name, score in zip(LLP_CLASSES, row["scores"]) if name not in weak[row["filename"]])
    run = tmp_path / "parser"
    result = CliRunner().invoke(app, ["train", "avvp", "--llp", str(chain["llp"]), "--labels", str(folders["mean"]), "--out", str(run),
                                      "--epochs", "1", "--batch-size", "8", "--d-model", "16", "--device", "cpu", "--threads", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["videos"]["train_with_pseudo_labels"] == 16


def test_migrate_labels_refuses_a_generator_of_other_features_in_one_line(chain, generator_run, tmp_path):
    result = invoke_mertk("migrate-labels", "--llp", str(chain["llp"]), "--out", str(tmp_path), "--features", "clip",
                          "--generator", str(generator_run / "checkpoints" / "generator.safetensors"))  # fmt: skip
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "trained on han features" in line and "this run uses clip features" in line
    assert not list(tmp_path.glob("avvp_pseudo/*.parquet"))


def test_generator_thresholds_calibrated_on_val_when_asked(chain, generator_run, tmp_path):
    from mertk.shards.dataset import open_shards

    checkpoint = generator_run / "checkpoints" / "generator.safetensors"
    result = CliRunner().invoke(app, ["migrate-labels", "--llp", str(chain["llp"]), "--out", str(tmp_path), "--generator", str(checkpoint), "--calibrate", "val"])
    assert result.exit_code == 0, result.output
    rules = open_shards(tmp_path / "avvp_pseudo").manifest.summary["generator"]["threshold_rules"]
    assert "calibrated on val" in set(rules["audio"].values()) | set(rules["visual"].values())
    thresholds = open_shards(tmp_path / "avvp_pseudo").manifest.summary["generator"]["thresholds"]
    assert all(t is None or 0 <= t <= 1 for m in ("audio", "visual") for t in thresholds[m].values())
