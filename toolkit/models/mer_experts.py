"""The three-expert MER model, after DEFT-LLM, fused by a learned softmax gate.

Experts (each maps its input to a `hidden`-wide feature and has its own classifier head):

- **structure**: the aligned 112x112 grayscale apex face crop, a small CNN;
- **texture**: the compact onset->apex flow (u, v, strain) x 28 x 28, a small CNN;
- **semantics** (motion semantics): the region motion statistics (computed from the flow) mapped
  by an MLP into the sentence-embedding space (`embedding_dim`, 384 for all-MiniLM-L6-v2); its
  feature is read from that embedding. During training the trainer pulls the embedding toward
  the sentence embedding of the sample's Uni-MER caption and AU clauses (mertk.training.mer);
  at test time it runs from the motion alone. Our reading of DEFT-LLM's "motion semantic
  alignment". With `semantic_input = "sentence-embedding"` (the oracle setting, `--test-inputs
  oracle-au`) the expert reads the caption + AU clauses embedding itself instead.

Fusion: a gate network reads the concatenated expert features and outputs a softmax weight per
expert; the fused logits are the gate-weighted sum of the experts' logits. The trainer adds an
auxiliary cross-entropy on every expert's own logits (weight `expert_loss_weight`) so that no
expert is starved by an early gate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from mertk.training.options import EXPERTS

MODEL_NAME = "mer_gated_experts"
SEMANTIC_INPUTS = ("motion", "sentence-embedding")


@dataclass
class MerModelConfig:
    num_classes: int
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    semantic_dim: int = 384  # width of the semantics expert's input
    hidden: int = 64
    dropout: float = 0.3
    semantic_input: str = "sentence-embedding"  # or "motion" (region statistics -> embedding space)
    embedding_dim: int = 384  # the sentence-embedding space a "motion" expert maps into

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class StructureExpert(nn.Module):
    """Apex face crop (batch, 1, 112, 112) in [0, 1] -> (batch, hidden)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(1, 16, stride=2),  # 56
            nn.MaxPool2d(2),  # 28
            _conv_block(16, 32),
            nn.MaxPool2d(2),  # 14
            _conv_block(32, hidden),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, face_b1hw: torch.Tensor) -> torch.Tensor:
        # per-image standardisation: lighting and skin tone are not the signal
        mean = face_b1hw.mean(dim=(2, 3), keepdim=True)
        std = face_b1hw.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
        return self.body((face_b1hw - mean) / std)


class TextureExpert(nn.Module):
    """Flow (batch, 3, 28, 28): u, v in percent of inter-ocular distance, strain -> (batch, hidden)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(3, 32),
            nn.MaxPool2d(2),  # 14
            _conv_block(32, 48),
            nn.MaxPool2d(2),  # 7
            _conv_block(48, hidden),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, flow_b3hw: torch.Tensor) -> torch.Tensor:
        return self.body(flow_b3hw)


class SemanticsExpert(nn.Module):
    """Fixed embedding (batch, semantic_dim) -> (batch, hidden)."""

    def __init__(self, semantic_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(semantic_dim),
            nn.Linear(semantic_dim, 2 * hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.ReLU(inplace=True),
        )

    def forward(self, semantic_bd: torch.Tensor) -> torch.Tensor:
        return self.body(semantic_bd)


class MotionSemanticsExpert(nn.Module):
    """Region motion statistics (batch, semantic_dim) -> a point of the sentence-embedding space
    (batch, embedding_dim) -> (batch, hidden). The embedding is what the alignment loss pulls."""

    def __init__(self, semantic_dim: int, embedding_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.to_embedding = nn.Sequential(
            nn.LayerNorm(semantic_dim),
            nn.Linear(semantic_dim, 4 * hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4 * hidden, embedding_dim),
        )
        self.from_embedding = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(inplace=True))

    def forward(self, motion_bd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature (batch, hidden), embedding (batch, embedding_dim))."""
        embedding = self.to_embedding(motion_bd)
        return self.from_embedding(embedding), embedding


@dataclass
class MerOutput:
    logits_bc: torch.Tensor  # fused
    expert_logits_ebc: torch.Tensor  # one row per active expert, in config order
    gate_be: torch.Tensor  # softmax gate weights, rows sum to 1
    semantic_embedding_bd: torch.Tensor | None = None  # the motion expert's point in the sentence space


class GatedExpertsModel(nn.Module):
    def __init__(self, config: MerModelConfig):
        super().__init__()
        unknown = [e for e in config.experts if e not in EXPERTS]
        if unknown or not config.experts:
            raise ValueError(f"experts must be a non-empty subset of {', '.join(EXPERTS)}; got {config.experts}")
        self.config = config
        hidden = config.hidden
        builders = {
            "structure": lambda: StructureExpert(hidden),
            "texture": lambda: TextureExpert(hidden),
            "semantics": lambda: (
                MotionSemanticsExpert(config.semantic_dim, config.embedding_dim, hidden, config.dropout)
                if config.semantic_input == "motion"
                else SemanticsExpert(config.semantic_dim, hidden, config.dropout)
            ),
        }
        if config.semantic_input not in SEMANTIC_INPUTS:
            raise ValueError(f"semantic_input must be one of {', '.join(SEMANTIC_INPUTS)}; got {config.semantic_input!r}")
        self.experts = nn.ModuleDict({name: builders[name]() for name in config.experts})
        self.heads = nn.ModuleDict(
            {name: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, config.num_classes)) for name in config.experts}
        )
        self.gate = nn.Sequential(
            nn.Linear(hidden * len(config.experts), hidden), nn.ReLU(inplace=True), nn.Linear(hidden, len(config.experts))
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> MerOutput:
        features, embedding = [], None
        for name in self.config.experts:
            output = self.experts[name](inputs[name])
            if isinstance(self.experts[name], MotionSemanticsExpert):
                output, embedding = output
            features.append(output)
        expert_logits = torch.stack([self.heads[name](f) for name, f in zip(self.config.experts, features)])
        gate = torch.softmax(self.gate(torch.cat(features, dim=1)), dim=1)
        fused = torch.einsum("be,ebc->bc", gate, expert_logits)
        return MerOutput(fused, expert_logits, gate, embedding)


def load_mer_model(path) -> tuple[GatedExpertsModel, dict]:
    """A trained model from a checkpoint written by `mertk train mer`, in eval mode, and the
    checkpoint's whole record (model config, classes, protocol, test-time inputs, ...)."""
    from dataclasses import fields

    from mertk.models.checkpoint import ForeignCheckpointError, load_model_weights

    state, record = load_model_weights(path, model=MODEL_NAME)
    names = {f.name for f in fields(MerModelConfig)}
    try:
        model = GatedExpertsModel(MerModelConfig(**{k: v for k, v in record.items() if k in names}))
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0]
        raise ForeignCheckpointError(f"{path}: its weights do not fit the model its header describes ({first})") from None
    return model.eval(), record
