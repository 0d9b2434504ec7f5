"""EAR's pseudo-label generator: one segment classifier per modality, each seeing its modality alone.

Forward pass for a batch of videos, audio (b, 10, Da) and visual (b, 10, Dv), per modality:

1. standardisation by the per-dimension mean and std of the training segments (buffers);
2. projection to `hidden` (linear, layer norm, ReLU, dropout);
3. temporal context: a residual 1-D convolution over the 10 segments (kernel `context`), so a
   segment's decision can lean on its neighbours (events last several seconds);
4. a linear classifier -> segment logits (b, 10, classes).

The two modalities share nothing: the audio classifier cannot borrow a visual event and the
other way round, which is what makes the generator's labels uni-modal. Video probability per
modality (for the weak-label loss): self-attentive pooling over segments, each segment weighted by
the softmax of its own logit, so the video probability follows the most confident segments.

The checkpoint's config records the features (set and parts), their dimensions and the classes;
`check_compatible` refuses a generator trained on other features or classes with one line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mertk.errors import InputError

MODEL_NAME = "avvp_pseudo_label_generator"
MODALITIES = ("audio", "visual")


class GeneratorMismatchError(InputError):
    """A generator checkpoint trained on other features or classes than the run's."""


@dataclass
class GeneratorConfig:
    features: str  # feature set: han | clip
    parts: dict[str, list[str]]  # extractor names per modality, in concatenation order
    audio_dim: int
    visual_dim: int
    classes: list[str]
    hidden: int = 256
    context: int = 3  # temporal kernel (segments); 1 = no context
    dropout: float = 0.2
    training: dict[str, Any] = field(default_factory=dict)  # what it was trained on (recorded, not used)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        return cls(**data)

    def features_text(self) -> str:
        return f"{self.features} features ({' | '.join('+'.join(self.parts[m]) for m in MODALITIES)})"


class SegmentClassifier(nn.Module):
    """One modality's segment classifier: (b, 10, dim) -> logits (b, 10, classes)."""

    def __init__(self, in_dim: int, hidden: int, classes: int, context: int, dropout: float):
        super().__init__()
        self.register_buffer("mean_d", torch.zeros(in_dim))
        self.register_buffer("std_d", torch.ones(in_dim))
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout))
        self.temporal = nn.Conv1d(hidden, hidden, context, padding=context // 2) if context > 1 else None
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(hidden, classes)

    def set_input_statistics(self, mean_d, std_d) -> None:
        """Per-dimension mean and std of the training segments (std floored: near-constant dimensions)."""
        self.mean_d.copy_(torch.as_tensor(mean_d, dtype=torch.float32))
        self.std_d.copy_(torch.as_tensor(std_d, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, x_btd: torch.Tensor) -> torch.Tensor:
        h_btd = self.project((x_btd - self.mean_d) / self.std_d)
        if self.temporal is not None:
            h_btd = h_btd + self.dropout(torch.relu(self.temporal(h_btd.transpose(1, 2)).transpose(1, 2)))
        return self.classify(h_btd)


@dataclass
class GeneratorOutput:
    segment_logits_bmtc: torch.Tensor  # modality 0 audio, 1 visual
    segment_bmtc: torch.Tensor  # sigmoid of the logits
    video_bmc: torch.Tensor  # per-modality video probability (self-attentive pooling)

    def video_union_bc(self) -> torch.Tensor:
        """Probability that the class is in the video in either modality (what a weak label states)."""
        return (1 - (1 - self.video_bmc[:, 0]) * (1 - self.video_bmc[:, 1])).clamp(1e-6, 1 - 1e-6)


class PseudoLabelGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        classes = len(config.classes)
        self.audio = SegmentClassifier(config.audio_dim, config.hidden, classes, config.context, config.dropout)
        self.visual = SegmentClassifier(config.visual_dim, config.hidden, classes, config.context, config.dropout)

    def forward(self, audio_btd: torch.Tensor, visual_btd: torch.Tensor) -> GeneratorOutput:
        logits = torch.stack([self.audio(audio_btd), self.visual(visual_btd)], dim=1)  # (b, 2, t, c)
        probabilities = torch.sigmoid(logits)
        weights = torch.softmax(logits, dim=2)
        video = (weights * probabilities).sum(dim=2).clamp(1e-6, 1 - 1e-6)
        return GeneratorOutput(logits, probabilities, video)


def check_compatible(config: GeneratorConfig, path: Path | str, features: str, parts: dict[str, Sequence[str]],
                     dims: dict[str, int], classes: Sequence[str]) -> None:
    """Refuse (GeneratorMismatchError, one line) a generator trained on other features or classes."""
    wanted = GeneratorConfig(features, {m: list(parts[m]) for m in MODALITIES}, dims["audio"], dims["visual"], list(classes))
    if (config.features, config.parts) != (wanted.features, wanted.parts) or (config.audio_dim, config.visual_dim) != (wanted.audio_dim, wanted.visual_dim):
        raise GeneratorMismatchError(
            f"{path}: this generator was trained on {config.features_text()}, dims {config.audio_dim} | {config.visual_dim}; "
            f"this run uses {wanted.features_text()}, dims {wanted.audio_dim} | {wanted.visual_dim}; train one on these features"
        )
    if list(config.classes) != list(classes):
        missing = [c for c in classes if c not in config.classes]
        extra = [c for c in config.classes if c not in classes]
        differences = [f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} {word}" for names, word in ((missing, "missing"), (extra, "extra")) if names]
        detail = "; ".join(differences) or "the same classes in another order"
        raise GeneratorMismatchError(
            f"{path}: this generator was trained on {len(config.classes)} classes, this run has {len(classes)} "
            f"({detail}); train one on these classes"
        )


def load_generator(path: Path | str, device: torch.device | str = "cpu") -> PseudoLabelGenerator:
    """Rebuild a generator from its safetensors checkpoint (ForeignCheckpointError if not one)."""
    from mertk.models.checkpoint import ForeignCheckpointError, load_model_weights

    state, config_data = load_model_weights(path, model=MODEL_NAME)
    try:
        config = GeneratorConfig.from_dict(config_data)
        model = PseudoLabelGenerator(config)
        model.load_state_dict(state)
    except (TypeError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ForeignCheckpointError(f"{path}: generator checkpoint does not match its own config ({first})") from None
    return model.to(device).eval()
