"""The three-expert MER model, after DEFT-LLM, fused by a learned softmax gate.

Experts (each maps its input to a `hidden`-wide feature and has its own classifier head):

- **structure**: the aligned 112x112 grayscale apex face crop, a small CNN;
- **texture**: the compact onset->apex flow (u, v, strain) x 28 x 28, a small CNN;
- **semantics**: a fixed text embedding of the caption and AU evidence (or, without the sentence
  encoder, a vector of region motion statistics), an MLP.

Fusion: a gate network reads the concatenated expert features and outputs a softmax weight per
expert; the fused logits are the gate-weighted sum of the experts' logits. The trainer adds an
auxiliary cross-entropy on every expert's own logits (weight `expert_loss_weight`) so that no
expert is starved by an early gate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

EXPERTS = ("structure", "texture", "semantics")
MODEL_NAME = "mer_gated_experts"


@dataclass
class MerModelConfig:
    num_classes: int
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    semantic_dim: int = 384
    hidden: int = 64
    dropout: float = 0.3

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


@dataclass
class MerOutput:
    logits_bc: torch.Tensor  # fused
    expert_logits_ebc: torch.Tensor  # one row per active expert, in config order
    gate_be: torch.Tensor  # softmax gate weights, rows sum to 1


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
            "semantics": lambda: SemanticsExpert(config.semantic_dim, hidden, config.dropout),
        }
        self.experts = nn.ModuleDict({name: builders[name]() for name in config.experts})
        self.heads = nn.ModuleDict(
            {name: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, config.num_classes)) for name in config.experts}
        )
        self.gate = nn.Sequential(
            nn.Linear(hidden * len(config.experts), hidden), nn.ReLU(inplace=True), nn.Linear(hidden, len(config.experts))
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> MerOutput:
        features = [self.experts[name](inputs[name]) for name in self.config.experts]
        expert_logits = torch.stack([self.heads[name](f) for name, f in zip(self.config.experts, features)])
        gate = torch.softmax(self.gate(torch.cat(features, dim=1)), dim=1)
        fused = torch.einsum("be,ebc->bc", gate, expert_logits)
        return MerOutput(fused, expert_logits, gate)
