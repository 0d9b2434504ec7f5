"""`mertk train dave`: tiny end-to-end runs on a generated UnAV-100 corpus, the evaluate round trip,
determinism, resume, the ablations; the pieces (targets, soft-NMS, losses) against plain versions."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from mertk.cli.app import app
from conftest import invoke_mertk
from mertk.models.checkpoint import load_model_weights
from mertk.models.esg_net import MODEL_NAME, EsgNet, EsgNetConfig
from mertk.models.temporal_points import assign_targets, point_grid, segment_tiou_torch, soft_nms
from mertk.shards.validate import validate_paths
from mertk.training.dave import DaveTrainConfig, diou_loss, train_dave
from mertk.training.errors import TrainingError

TINY = dict(epochs=2, batch_size=4, d_model=16, heads=2, mode_layers=1, device="cpu", progress=False, threads=1)
TINY_CLI = ["--epochs", "2", "--batch-size", "4", "--d-model", "16", "--mode-layers", "1", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def unav_corpus(tmp_path_factory) -> Path:
    from mertk.sample_data.unav100 import make_sample_unav100

    out = tmp_path_factory.mktemp("unav") / "unav"
    make_sample_unav100(out, seed=1, train=12, val=3, test=3, progress=False)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dave-cache")


def tiny(corpus: Path, out: Path, cache: Path, **overrides) -> DaveTrainConfig:
    return DaveTrainConfig(unav=corpus, out=out, cache_dir=cache, **{**TINY, **overrides})


def test_cli_end_to_end_and_the_evaluate_round_trip(unav_corpus, cache, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "dave", "--unav", str(unav_corpus), "--out", str(run), "--cache-dir", str(cache), *TINY_CLI])
    assert result.exit_code == 0, result.output
    assert "average mAP (0.1..0.9)" in result.output and "3 videos rejected" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["variant"] == "esg_net" and metrics["videos"] == {"train": 9, "val": 3, "test": 3, "rejected": 3}
    assert sorted(r["reason"].split(" (")[0] for r in metrics["rejections"]) == ["1 non-finite values", "missing feature file", "truncated or not a .npy array"]
    assert list(metrics["test"]["map"]) == [f"0.{k}" for k in range(1, 10)] and len(metrics["history"]) == 2
    assert set(metrics["gate_weights"]) == {"layer_1"} and sum(metrics["gate_weights"]["layer_1"].values()) == pytest.approx(1, abs=1e-3)
    assert list(metrics["esi_gates"]) == [f"stage_{level}" for level in range(1, 6)] and all(set(g) == {"reads_visual", "reads_audio", "guidance"} for g in metrics["esi_gates"].values())
    assert any(value != 0 for gates in metrics["esi_gates"].values() for value in gates.values())  # training moved them off 0
    assert 0 <= metrics["throughput"]["data_wait_share"] < 1
    reports = validate_paths([run])
    assert reports and all(report.ok for report in reports), [str(f) for r in reports for f in r.findings]
    evaluated = CliRunner().invoke(app, ["evaluate", "dave", str(run), "--unav", str(unav_corpus), "--split", "test", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert figures["videos"] == 3 and figures["average_map"] == pytest.approx(metrics["test"]["average_map"], abs=1e-3)
    state, config = load_model_weights(run / "checkpoints" / "esg_net.safetensors", model=MODEL_NAME)
    EsgNet(EsgNetConfig(**config)).load_state_dict(state)
    page = (run / "_report.html").read_text()
    assert page.count("<img") >= 4 and "Per-class AP" in page and "ESI gates" in page


def test_same_seed_same_predictions_and_resume_after_an_interrupt(unav_corpus, cache, tmp_path):
    reference = train_dave(tiny(unav_corpus, tmp_path / "reference", cache, epochs=3))
    again = train_dave(tiny(unav_corpus, tmp_path / "again", cache, epochs=3))
    assert again["history"] == reference["history"]
    assert (tmp_path / "again" / "predictions.parquet").read_bytes() == (tmp_path / "reference" / "predictions.parquet").read_bytes()
    run = tmp_path / "run"

    def interrupt(step: int) -> None:  # 9 usable train videos, batch 4: step 4 is the first batch of epoch 1
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_dave(tiny(unav_corpus, run, cache, epochs=3), after_step=interrupt)
    state = torch.load(run / "_state" / "train.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    steps: list[int] = []
    resumed = train_dave(tiny(unav_corpus, run, cache, epochs=3), after_step=steps.append)
    assert steps[0] == 5 and resumed["history"] == reference["history"]
    assert (run / "predictions.parquet").read_bytes() == (tmp_path / "reference" / "predictions.parquet").read_bytes()


def test_the_baseline_ablation_has_no_esi_losses_and_no_gates(unav_corpus, cache, tmp_path):
    metrics = train_dave(tiny(unav_corpus, tmp_path / "base", cache, esi=False, mode=False, epochs=1))
    assert metrics["variant"] == "baseline" and metrics["gate_weights"] == {} and metrics["esi_gates"] == {}
    rows = pq.read_table(tmp_path / "base" / "predictions.parquet").to_pylist()
    assert rows and all(0 <= r["start"] <= r["end"] and 0 <= r["score"] <= 1 for r in rows)
    assert len({r["video_id"] for r in rows}) <= 3 and max(np.unique([r["video_id"] for r in rows], return_counts=True)[1]) <= 100


def test_unusable_corpus_and_resume_with_other_options_are_one_line(unav_corpus, cache, tmp_path):
    result = invoke_mertk("train", "dave", "--unav", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--device", "cpu")
    assert result.exit_code == 2 and "no unav100_annotations.json" in result.output and "Traceback" not in result.output
    run = tmp_path / "run"
    train_dave(tiny(unav_corpus, run, cache, epochs=1))
    result = invoke_mertk("train", "dave", "--unav", str(unav_corpus), "--out", str(run), "--cache-dir", str(cache), *TINY_CLI, "--lr", "0.5")
    assert result.exit_code == 2 and "other parameters" in result.output


def test_closed_esi_gates_leave_the_network_without_esi_and_still_learn():
    torch.manual_seed(0)
    config = dict(visual_dim=12, audio_dim=6, num_classes=5, d_model=16, heads=2, levels=3, mode_layers=1, regression_ranges=[[0, 4], [4, 8], [8, 10_000]])
    with_esi, without_esi = EsgNet(EsgNetConfig(**config, esi=True)), EsgNet(EsgNetConfig(**config, esi=False))
    missing, unexpected = without_esi.load_state_dict(with_esi.state_dict(), strict=False)
    assert not missing and any(name.startswith("fused_reads_visual") for name in unexpected)
    visual, audio = torch.randn(2, 12, 12), torch.randn(2, 12, 6)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    with_esi.eval(), without_esi.eval()
    gated, plain = with_esi(visual, audio, mask), without_esi(visual, audio, mask)
    for a, b in zip(gated.class_logits + gated.offsets, plain.class_logits + plain.offsets):
        torch.testing.assert_close(a, b)
    assert len(gated.video_logits) == 3 and not plain.video_logits
    # the gates start closed but receive gradient, so training can open them
    with_esi.train()
    output = with_esi(visual, audio, mask)
    (torch.cat(output.class_logits, 1).sum() + torch.stack(output.video_logits).sum()).backward()
    assert with_esi.guidance_gates.grad.abs().sum() > 0
    assert all(layer.branch_gate.grad.abs().sum() > 0 for layer in (*with_esi.fused_reads_visual, *with_esi.fused_reads_audio))
    with_esi.guidance_gates.data.fill_(1.0)  # an open gate changes what the heads read
    with_esi.eval()
    assert not torch.allclose(with_esi(visual, audio, mask).class_logits[0], gated.class_logits[0])


def test_point_targets_take_the_shortest_event_within_the_stage_range():
    grid = point_grid(32, [[0, 4], [4, 8], [8, 16], [16, 32], [32, 10_000]])
    segments = torch.tensor([[[2.0, 6.0], [1.0, 30.0]]])
    classes, offsets, positive = assign_targets(grid, segments, torch.tensor([[4, 7]]), torch.tensor([[True, True]]), 10)
    stage0 = slice(0, 32)
    # stage 0 (stride 1, range 0..4): points 3, 4, 5 lie inside the short event's centre region and within reach
    assert positive[0, stage0].nonzero().flatten().tolist() == [3, 4, 5]
    assert classes[0, 4].nonzero().flatten().tolist() == [4] and offsets[0, 4].tolist() == [2.0, 2.0]
    long_points = positive[0] & (classes[0, :, 7] > 0)
    # the long event (29 steps) lands only where its farther boundary (15..19 steps away) is within the stage's range
    assert sorted(set(grid.stride_p[long_points].tolist())) == [4.0, 8.0]
    farthest = torch.maximum(grid.position_p[long_points] - 1.0, 30.0 - grid.position_p[long_points])
    assert torch.all((farthest >= grid.low_p[long_points]) & (farthest <= grid.high_p[long_points]))


def plain_soft_nms(start, end, score, group, sigma, min_score, max_per_group):
    kept = {}
    for g in sorted(set(group)):
        members = [i for i in range(len(score)) if group[i] == g]
        current = {i: score[i] for i in members if score[i] > min_score}
        taken = 0
        while current and taken < max_per_group:
            best = max(current, key=lambda i: (current[i], -members.index(i)))
            kept[best] = current.pop(best)
            taken += 1
            for i in list(current):
                iou = float(segment_tiou_torch(torch.tensor(start[best]), torch.tensor(end[best]), torch.tensor(start[i]), torch.tensor(end[i])))
                current[i] *= np.exp(-(iou**2) / sigma)
                if current[i] <= min_score:
                    current.pop(i)
    return kept


def test_vectorised_soft_nms_equals_the_plain_loop():
    rng = np.random.default_rng(3)
    n = 300
    start = rng.uniform(0, 50, n)
    end = start + rng.uniform(0.5, 10, n)
    score = rng.uniform(0, 1, n)
    group = rng.integers(0, 7, n)
    indices, scores = soft_nms(*(torch.tensor(a, dtype=torch.float64) for a in (start, end, score)), torch.tensor(group), sigma=0.5, min_score=1e-3, max_per_group=20)
    expected = plain_soft_nms(start, end, score, group, 0.5, 1e-3, 20)
    assert dict(zip(indices.tolist(), scores.tolist())) == pytest.approx(expected, rel=1e-9)


def test_diou_loss_is_zero_on_a_perfect_segment_and_grows_with_the_centre_gap():
    target = torch.tensor([[2.0, 3.0]])
    assert float(diou_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-7)
    same_length = [float(diou_loss(torch.tensor([[2.0 + shift, 3.0 - shift]]), target)) for shift in (0.5, 1.0, 2.0)]
    assert same_length == sorted(same_length) and same_length[0] > 0


def test_a_corpus_without_validation_videos_is_refused(unav_corpus, cache, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(unav_corpus, corpus)
    path = corpus / "annotations" / "unav100_annotations.json"
    data = json.loads(path.read_text())
    for entry in data["database"].values():
        entry["subset"] = "train" if entry["subset"] == "validation" else entry["subset"]
    path.write_text(json.dumps(data))
    with pytest.raises(TrainingError, match="validation and test videos"):
        train_dave(tiny(corpus, tmp_path / "run", tmp_path / "cache"))
