"""The bundled models' shapes and the checkpoint format that identifies them as ours."""
from __future__ import annotations

import pytest
import torch

from mertk.models.avvp_parser import HybridAttentionParser, ParserConfig
from mertk.models.checkpoint import (
    ForeignCheckpointError,
    load_model_weights,
    load_training_state,
    save_model_weights,
    save_training_state,
)
from mertk.models.mer_experts import GatedExpertsModel, MerModelConfig


def test_gated_experts_shapes_and_gate_rows_sum_to_one():
    torch.manual_seed(0)
    model = GatedExpertsModel(MerModelConfig(num_classes=5, semantic_dim=12, hidden=8))
    inputs = {"structure": torch.rand(4, 1, 112, 112), "texture": torch.randn(4, 3, 28, 28), "semantics": torch.randn(4, 12)}
    output = model(inputs)
    assert output.logits_bc.shape == (4, 5) and output.expert_logits_ebc.shape == (3, 4, 5)
    assert torch.allclose(output.gate_be.sum(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="subset of structure, texture, semantics"):
        GatedExpertsModel(MerModelConfig(num_classes=5, experts=["colour"]))


def test_parser_outputs_are_probabilities_of_the_right_shape():
    torch.manual_seed(0)
    model = HybridAttentionParser(ParserConfig(audio_dim=6, visual_dim=9, d_model=8, heads=2)).eval()
    with torch.no_grad():
        output = model(torch.randn(3, 10, 6), torch.randn(3, 10, 9))
    assert output.segment_bmtc.shape == (3, 2, 10, 25) and output.video_bc.shape == (3, 25)
    assert output.unimodal_segment_bmtc.shape == (3, 2, 10, 25)
    for tensor in (output.segment_bmtc, output.video_bc, output.unimodal_video_bc):
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    plain = HybridAttentionParser(ParserConfig(audio_dim=6, visual_dim=9, d_model=8, heads=2, unimodal_heads=False))
    assert plain(torch.randn(1, 10, 6), torch.randn(1, 10, 9)).unimodal_segment_bmtc is None


def test_model_weights_round_trip_and_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    model = GatedExpertsModel(MerModelConfig(num_classes=3, experts=["texture"], hidden=4))
    path = save_model_weights(tmp_path / "m.safetensors", model.state_dict(), model="mer_gated_experts", config={"hidden": 4})
    state, config = load_model_weights(path, model="mer_gated_experts")
    assert config == {"hidden": 4}
    assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())
    with pytest.raises(ForeignCheckpointError, match="of model 'mer_gated_experts', not 'avvp_hybrid_attention_parser'"):
        load_model_weights(path, model="avvp_hybrid_attention_parser")

    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(3)}, str(plain))
    with pytest.raises(ForeignCheckpointError, match="plain.safetensors: not a mertk checkpoint"):
        load_model_weights(plain, model="mer_gated_experts")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ForeignCheckpointError, match="garbage.safetensors: not a mertk checkpoint"):
        load_model_weights(garbage, model="mer_gated_experts")
    with pytest.raises(FileNotFoundError):
        load_model_weights(tmp_path / "absent.safetensors", model="mer_gated_experts")


def test_training_state_round_trip_and_kind_check(tmp_path):
    path = save_training_state(tmp_path / "s.pt", {"epoch": 3, "weights": torch.ones(2)}, kind="mer")
    state = load_training_state(path, kind="mer")
    assert state["epoch"] == 3 and torch.equal(state["weights"], torch.ones(2))
    with pytest.raises(ForeignCheckpointError, match="of 'mer', not 'avvp'"):
        load_training_state(path, kind="avvp")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ForeignCheckpointError, match="text.pt: not a mertk training checkpoint"):
        load_training_state(tmp_path / "text.pt", kind="mer")


def test_model_weights_are_byte_reproducible_with_a_sorted_header(tmp_path):
    import json
    import struct

    from safetensors.torch import save

    torch.manual_seed(0)
    state = GatedExpertsModel(MerModelConfig(num_classes=5, semantic_dim=12, hidden=8)).state_dict()
    config = {"zeta": 1, "alpha": [2, 3], "classes": ["b", "a"]}
    first = save_model_weights(tmp_path / "a.safetensors", state, model="m", config=config).read_bytes()
    second = save_model_weights(tmp_path / "b.safetensors", state, model="m", config=config).read_bytes()
    assert first == second
    (length,) = struct.unpack("<Q", first[:8])
    assert length % 8 == 0
    header = json.loads(first[8 : 8 + length])
    assert list(header) == sorted(header) and list(header["__metadata__"]) == sorted(header["__metadata__"])
    # the same tensors as the library's own writer, only the header re-ordered
    reference = save({k: v.contiguous() for k, v in state.items()}, metadata=header["__metadata__"])
    (reference_length,) = struct.unpack("<Q", reference[:8])
    assert first[8 + length :] == reference[8 + reference_length :]
    loaded, loaded_config = load_model_weights(tmp_path / "a.safetensors", model="m")
    assert loaded_config == config and all(torch.equal(loaded[k], state[k]) for k in state)


def test_training_state_bytes_do_not_depend_on_the_file_name(tmp_path):
    state = {"fingerprint": "x", "model": {"w": torch.arange(4.0)}, "epoch": 1}
    a = save_training_state(tmp_path / "one.pt", state, kind="mer").read_bytes()
    b = save_training_state(tmp_path / "other-name.pt", state, kind="mer").read_bytes()
    assert a == b
    assert load_training_state(tmp_path / "other-name.pt", kind="mer")["epoch"] == 1
