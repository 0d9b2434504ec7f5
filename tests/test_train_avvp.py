"""`mertk train avvp`: tiny end-to-end runs on a generated LLP corpus and the real migrate-labels
output, the evaluate round trip, resume after an interrupted epoch, bad inputs."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from cli_run import run_mertk
from mertk.cli.app import app
from mertk.models.avvp_parser import MODEL_NAME, HybridAttentionParser, ParserConfig
from mertk.models.checkpoint import ForeignCheckpointError, load_model_weights
from mertk.shards.manifest import Manifest
from mertk.shards.validate import validate_paths
from mertk.training.avvp import AvvpTrainConfig, parser_loss, train_avvp
from mertk.training.avvp_data import AvvpDataError, pack_llp
from mertk.errors import InputError
from mertk.training.errors import TrainingError

TINY = dict(epochs=2, batch_size=8, d_model=16, heads=2, device="cpu", progress=False, threads=1)
TEN_NUMBERS = {"audio", "visual", "audio_visual", "type", "event"}


@pytest.fixture(scope="module")
def llp_corpus(tmp_path_factory) -> Path:
    from mertk.sample_data.llp import make_sample_llp

    out = tmp_path_factory.mktemp("llp") / "llp"
    make_sample_llp(out, train=16, val=6, test=6, progress=False)
    return out


@pytest.fixture(scope="module")
def pseudo_dir(llp_corpus, tmp_path_factory) -> Path:
    """The real `mertk migrate-labels` output for the tiny corpus."""
    out = tmp_path_factory.mktemp("migrated")
    result = CliRunner().invoke(app, ["migrate-labels", "--llp", str(llp_corpus), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "avvp_pseudo"


def tiny_config(llp: Path, labels: Path | None, out: Path, **overrides) -> AvvpTrainConfig:
    return AvvpTrainConfig(llp=llp, labels=labels, out=out, **{**TINY, **overrides})


def test_cli_end_to_end_with_migrated_labels(llp_corpus, pseudo_dir, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "avvp", "--llp", str(llp_corpus), "--labels", str(pseudo_dir), "--out", str(run), "--epochs", "2",
         "--batch-size", "8", "--d-model", "16", "--device", "cpu", "--threads", "1", "--cache-dir", str(tmp_path / "cache")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test: segment Type@AV" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        assert set(metrics[split]["segment"]) == TEN_NUMBERS and set(metrics[split]["event"]) == TEN_NUMBERS
        assert metrics[split]["videos"] == 6
    assert metrics["videos"]["train_with_pseudo_labels"] == 16
    assert metrics["best_epoch"] in (0, 1) and len(metrics["history"]) == 2
    reports = validate_paths([run])
    assert reports and all(report.ok for report in reports), [str(f) for r in reports for f in r.findings]
    state, config = load_model_weights(run / "checkpoints" / "parser.safetensors", model=MODEL_NAME)
    model = HybridAttentionParser(ParserConfig(**{k: v for k, v in config.items() if k in ParserConfig.__dataclass_fields__}))
    model.load_state_dict(state)
    with pytest.raises(ForeignCheckpointError, match="not 'mer_gated_experts'"):
        load_model_weights(run / "checkpoints" / "parser.safetensors", model="mer_gated_experts")


def test_predictions_are_scored_identically_by_evaluate_avvp(llp_corpus, tmp_path):
    from mertk.metrics.avvp_evaluation import evaluate_avvp_predictions

    run = tmp_path / "run"
    metrics = train_avvp(tiny_config(llp_corpus, None, run, epochs=3))
    scores = evaluate_avvp_predictions(run / "predictions.parquet", llp_corpus, "test")
    scores = scores.to_dict() if hasattr(scores, "to_dict") else scores
    for level in ("segment", "event"):
        for key in TEN_NUMBERS:
            assert scores[level][key] == pytest.approx(metrics["test"][level][key])


def test_weak_only_baseline_and_determinism(llp_corpus, tmp_path):
    first = train_avvp(tiny_config(llp_corpus, None, tmp_path / "a", cache_dir=tmp_path / "cache"))
    second = train_avvp(tiny_config(llp_corpus, None, tmp_path / "b", cache_dir=tmp_path / "cache"))
    assert first["labels"] == "none" and first["videos"]["train_with_pseudo_labels"] == 0
    assert first["history"] == second["history"]
    assert (tmp_path / "a" / "predictions.parquet").read_bytes() == (tmp_path / "b" / "predictions.parquet").read_bytes()


def test_resume_after_interrupted_epoch_gives_the_uninterrupted_result(llp_corpus, pseudo_dir, tmp_path):
    reference = train_avvp(tiny_config(llp_corpus, pseudo_dir, tmp_path / "reference", epochs=3))
    run = tmp_path / "run"

    def interrupt(step: int) -> None:  # 16 videos, batch 8: step 3 is the first batch of epoch 1
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_avvp(tiny_config(llp_corpus, pseudo_dir, run, epochs=3), after_step=interrupt)
    state = torch.load(run / "_state" / "train.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    steps = []
    resumed = train_avvp(tiny_config(llp_corpus, pseudo_dir, run, epochs=3), after_step=steps.append)
    assert steps[0] == 4
    assert resumed["history"] == reference["history"]
    assert resumed["test"] == reference["test"]
    assert (run / "predictions.parquet").read_bytes() == (tmp_path / "reference" / "predictions.parquet").read_bytes()


def test_foreign_training_state_is_refused(llp_corpus, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "_state").mkdir(parents=True)
    (run / "_state" / "train.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    status, output = run_mertk(monkeypatch, capsys, "train", "avvp", "--llp", llp_corpus, "--labels", "none", "--out", run, "--device", "cpu")
    assert status == 2
    assert "not a mertk training checkpoint" in output and "train.pt" in output and "Traceback" not in output


def test_unusable_feature_file_is_a_recorded_rejection(llp_corpus, tmp_path):
    import shutil

    corpus = tmp_path / "llp"
    shutil.copytree(llp_corpus, corpus)
    video = (corpus / "AVVP_train.csv").read_text().splitlines()[3].split("\t")[0][:11]
    (corpus / "feats" / "vggish" / f"{video}.npy").write_bytes(b"\x93NUMPY truncated")
    packed = pack_llp(corpus, "han", tmp_path / "cache", progress=False)
    assert len(packed.filenames) == 27
    [rejection] = packed.rejections
    assert rejection.file.endswith(f"feats/vggish/{video}.npy") and "truncated" in rejection.reason
    metrics = train_avvp(tiny_config(corpus, None, tmp_path / "run", epochs=1, cache_dir=tmp_path / "cache"))
    assert metrics["videos"]["train"] == 15 and metrics["videos"]["rejected"] == 1


def test_unusable_labels_and_options_give_clear_errors(llp_corpus, tmp_path):
    with pytest.raises(AvvpDataError, match="no _manifest.json"):
        train_avvp(tiny_config(llp_corpus, tmp_path, tmp_path / "run"))
    from mertk.training.synthetic import write_synthetic_unimer

    unimer = write_synthetic_unimer(tmp_path / "unimer", subjects=2, per_subject=2)
    with pytest.raises(InputError, match="holds unimer_sample.v1 shards; expected avvp_pseudo_label"):
        train_avvp(tiny_config(llp_corpus, unimer, tmp_path / "run"))
    with pytest.raises(TrainingError, match="--pseudo-target"):
        train_avvp(tiny_config(llp_corpus, None, tmp_path / "run", pseudo_target="fuzzy"))
    with pytest.raises(AvvpDataError, match="not a folder"):
        train_avvp(tiny_config(tmp_path / "missing", None, tmp_path / "run"))


def test_soft_constraint_pulls_fused_toward_unimodal_only_inside_the_weak_label():
    from mertk.models.avvp_parser import ParserOutput

    weak = torch.zeros(1, 25)
    weak[0, 3] = 1.0
    fused = torch.full((1, 2, 10, 25), 0.5, requires_grad=True)
    unimodal = torch.full((1, 2, 10, 25), 0.9, requires_grad=True)
    output = ParserOutput(fused, torch.full((1, 25), 0.5, requires_grad=True), unimodal, torch.full((1, 25), 0.5, requires_grad=True))
    config = AvvpTrainConfig(llp=Path("."), labels=None, out=Path("."), tie_weight=1.0)
    parser_loss(output, weak, None, None, config).backward()
    assert unimodal.grad is None or torch.count_nonzero(unimodal.grad) == 0  # stop-gradient on the uni-modal side
    gradient = fused.grad[0]
    assert torch.all(gradient[:, :, 3] < 0)  # pushed up toward 0.9
    assert torch.count_nonzero(gradient[:, :, [c for c in range(25) if c != 3]]) == 0
    fused.grad = None
    parser_loss(output, weak, None, None, AvvpTrainConfig(llp=Path("."), labels=None, out=Path("."), tie_weight=0.0)).backward()
    assert fused.grad is None or torch.count_nonzero(fused.grad) == 0  # the ablation: no tie at all


def test_leak_mode_ties_only_where_the_fusion_claims_more_than_the_modality():
    from mertk.models.avvp_parser import ParserOutput

    weak = torch.ones(1, 25)
    fused = torch.full((1, 2, 10, 25), 0.5)
    fused[:, 0] = 0.95  # audio: fused above the uni-modal 0.9 -> tied; visual: below -> free
    fused.requires_grad_(True)
    unimodal = torch.full((1, 2, 10, 25), 0.9)
    output = ParserOutput(fused, torch.full((1, 25), 0.5, requires_grad=True), unimodal, torch.full((1, 25), 0.5, requires_grad=True))
    config = AvvpTrainConfig(llp=Path("."), labels=None, out=Path("."), tie_weight=1.0, tie_mode="leak")
    parser_loss(output, weak, None, None, config).backward()
    assert torch.all(fused.grad[0, 0] > 0)  # pushed down toward 0.9
    assert torch.count_nonzero(fused.grad[0, 1]) == 0
