"""ESG-Net as we read it (Li et al., IEEE TMM 2025; no code released), on a UnAV-style detector.

Input: one video's aligned streams, visual (b, t, 2048) = I3D rgb | flow and audio (b, t, 128) =
VGGish, with a mask of valid steps (b, t); t is the whole video (no cropping, any length).

Common to every variant (the UnAV-style baseline):
1. per-dimension standardisation (train statistics kept as buffers), then per modality a linear
   map to `d_model` and a temporal convolution (kernel 3), each with layer norm and ReLU;
2. the streams are fused once before the pyramid (each attends to the other by cross-attention,
   residual; then their mean);
3. a temporal pyramid over the fused sequence: `levels` stages, stride 2 between stages (max
   pooling), one transformer layer (masked self-attention + feed-forward) per stage;
4. heads shared by all stages: per step, class logits (b, t_l, C) and the distances from the step
   to the event's start and end in units of the stage's stride (ReLU times a learned per-stage scale).

ESI (early semantics interaction), on unless `esi=False`:
- the audio and visual streams are carried down the pyramid too (max pooling), and at *every*
  stage the fused sequence reads both again by cross-attention before its transformer layer, so
  audio-visual agreement is re-checked at every temporal scale;
- each stage has a video-level multi-label classifier (masked mean and max pooling of the stage
  output -> C logits) trained with BCE against the video's classes (the trainer adds one loss per
  stage), and its class probabilities are fed back as guidance: a linear map of them is added to
  the stage output, which the heads and the next stage read;
- every ESI branch added to the fused sequence (the two cross-attention readings, the guidance) is
  scaled by a learned scalar per stage that starts at 0, so the network starts as the one without
  ESI and opens each branch as far as training finds it useful. Without these gates the new
  branches perturbed the shared trunk from the first step and the model learned more slowly than
  without ESI (a README section compares the readings on the validation split).
(A first reading, two separate stream pyramids fused by cross-attention at each stage with no
joint layer, scored below the baseline on the sample corpus; see the README.)

MoDE (mixture of dependency experts), on unless `mode=False`: `mode_layers` serial layers applied
to every stage's fused features (weights shared across stages, like the heads). Each layer has
three experts over the layer-normed input: (a) masked self-attention over time (dependencies
between events far apart), (b) class-query attention (C learned class queries read the sequence,
then the sequence reads the queries back: dependencies between classes, e.g. co-occurring
events), (c) a depthwise temporal convolution (kernel 5) + pointwise map (local boundary
context). A gate (linear map of the input, softmax over experts, per step) weighs them; the
weighted sum is added to the input, followed by a feed-forward sublayer. The mean gate weights
per layer are reported. Without MoDE the heads read the pyramid features directly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

MODEL_NAME = "esg_net"
EXPERT_NAMES = ("temporal_attention", "class_queries", "local_convolution")


@dataclass
class EsgNetConfig:
    visual_dim: int = 2048
    audio_dim: int = 128
    num_classes: int = 100
    d_model: int = 64
    heads: int = 4
    levels: int = 5
    mode_layers: int = 2
    dropout: float = 0.1
    esi: bool = True
    mode: bool = True
    # regression range of each stage: max(distance to start, distance to end), in steps of stage 0
    regression_ranges: list[list[float]] = field(default_factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 10_000]])

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        if len(self.regression_ranges) != self.levels:
            raise ValueError(f"{self.levels} pyramid levels need {self.levels} regression ranges, got {len(self.regression_ranges)}")


def masked_fill_invalid(x_btd: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
    return x_btd * mask_bt.unsqueeze(-1).to(x_btd.dtype)


class ConvEmbedding(nn.Module):
    def __init__(self, in_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(in_dim, d_model)
        self.conv = nn.Conv1d(d_model, d_model, 3, padding=1)
        self.norms = nn.ModuleList([nn.LayerNorm(d_model), nn.LayerNorm(d_model)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_btd: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
        x_btd = masked_fill_invalid(F.relu(self.norms[0](self.project(x_btd))), mask_bt)
        x_btd = self.dropout(F.relu(self.norms[1](self.conv(x_btd.transpose(1, 2)).transpose(1, 2))))
        return masked_fill_invalid(x_btd, mask_bt)


class TransformerLayer(nn.Module):
    """Pre-norm masked self-attention (or cross-attention when `other` is given) + feed-forward."""

    def __init__(self, d_model: int, heads: int, dropout: float, feed_forward: bool = True, gated: bool = False):
        super().__init__()
        # gated: the attention branch is scaled by a learned scalar that starts at 0 (the layer starts as the identity)
        self.branch_gate = nn.Parameter(torch.zeros(1)) if gated else None
        self.norm = nn.LayerNorm(d_model)
        self.norm_other = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.feed_forward = (
            nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))
            if feed_forward
            else None
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_btd: torch.Tensor, mask_bt: torch.Tensor, other_btd: torch.Tensor | None = None) -> torch.Tensor:
        query = self.norm(x_btd)
        context = query if other_btd is None else self.norm_other(other_btd)
        attended, _ = self.attention(query, context, context, key_padding_mask=~mask_bt, need_weights=False)
        if self.branch_gate is not None:
            attended = self.branch_gate * attended
        x_btd = x_btd + self.dropout(attended)
        if self.feed_forward is not None:
            x_btd = x_btd + self.dropout(self.feed_forward(x_btd))
        return masked_fill_invalid(x_btd, mask_bt)


def downsample(x_btd: torch.Tensor, mask_bt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stride 2 in time: max pooling (kernel 3) of the features, every other step of the mask."""
    pooled = F.max_pool1d(x_btd.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)
    mask = mask_bt[:, ::2]
    return masked_fill_invalid(pooled, mask), mask


def masked_video_pool(x_btd: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
    """(b, t, d) -> (b, 2d): mean and max over the valid steps."""
    valid = mask_bt.unsqueeze(-1)
    mean = (x_btd * valid).sum(1) / valid.sum(1).clamp_min(1)
    maximum = x_btd.masked_fill(~valid, float("-inf")).amax(1)
    return torch.cat([mean, maximum], dim=-1)


class ClassQueryExpert(nn.Module):
    """Class queries read the sequence, then the sequence reads the queries back."""

    def __init__(self, d_model: int, heads: int, num_classes: int, dropout: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_classes, d_model) * 0.02)
        self.read = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.write = nn.MultiheadAttention(d_model, heads, batch_first=True)

    def forward(self, x_btd: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
        queries = self.queries.unsqueeze(0).expand(x_btd.shape[0], -1, -1)
        classes, _ = self.read(queries, x_btd, x_btd, key_padding_mask=~mask_bt, need_weights=False)
        classes = classes + queries
        written, _ = self.write(x_btd, classes, classes, need_weights=False)
        return written


class LocalExpert(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.depthwise = nn.Conv1d(d_model, d_model, 5, padding=2, groups=d_model)
        self.pointwise = nn.Linear(d_model, d_model)

    def forward(self, x_btd: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
        local = self.depthwise(masked_fill_invalid(x_btd, mask_bt).transpose(1, 2)).transpose(1, 2)
        return self.pointwise(F.gelu(local))


class DependencyExpertLayer(nn.Module):
    """One MoDE layer: gated sum of the three experts, residual, then feed-forward."""

    def __init__(self, d_model: int, heads: int, num_classes: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.temporal = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.class_queries = ClassQueryExpert(d_model, heads, num_classes, dropout)
        self.local = LocalExpert(d_model)
        self.gate = nn.Linear(d_model, len(EXPERT_NAMES))
        self.feed_forward = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_btd: torch.Tensor, mask_bt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm(x_btd)
        temporal, _ = self.temporal(normed, normed, normed, key_padding_mask=~mask_bt, need_weights=False)
        experts_bted = torch.stack([temporal, self.class_queries(normed, mask_bt), self.local(normed, mask_bt)], dim=2)
        gate_bte = torch.softmax(self.gate(normed), dim=-1)
        x_btd = x_btd + self.dropout((gate_bte.unsqueeze(-1) * experts_bted).sum(2))
        x_btd = x_btd + self.dropout(self.feed_forward(x_btd))
        return masked_fill_invalid(x_btd, mask_bt), gate_bte


@dataclass
class EsgNetOutput:
    class_logits: list[torch.Tensor]  # per stage (b, t_l, C)
    offsets: list[torch.Tensor]  # per stage (b, t_l, 2): distance to start, to end, in units of the stage stride
    masks: list[torch.Tensor]  # per stage (b, t_l) bool
    video_logits: list[torch.Tensor]  # per stage (b, C); empty without ESI
    gate_weights: list[torch.Tensor]  # per MoDE layer (b, t, experts) over all stages' valid steps concatenated


class EsgNet(nn.Module):
    def __init__(self, config: EsgNetConfig):
        super().__init__()
        self.config = config
        d, heads, dropout, levels = config.d_model, config.heads, config.dropout, config.levels
        self.register_buffer("visual_mean", torch.zeros(config.visual_dim))
        self.register_buffer("visual_std", torch.ones(config.visual_dim))
        self.register_buffer("audio_mean", torch.zeros(config.audio_dim))
        self.register_buffer("audio_std", torch.ones(config.audio_dim))
        self.embed_visual = ConvEmbedding(config.visual_dim, d, dropout)
        self.embed_audio = ConvEmbedding(config.audio_dim, d, dropout)
        # the fusion before the pyramid and the pyramid over the fused sequence are shared by every variant
        self.visual_reads_audio = TransformerLayer(d, heads, dropout, feed_forward=False)
        self.audio_reads_visual = TransformerLayer(d, heads, dropout, feed_forward=False)
        self.fused_stages = nn.ModuleList([TransformerLayer(d, heads, dropout) for _ in range(levels)])
        if config.esi:
            self.fused_reads_visual = nn.ModuleList([TransformerLayer(d, heads, dropout, feed_forward=False, gated=True) for _ in range(levels)])
            self.fused_reads_audio = nn.ModuleList([TransformerLayer(d, heads, dropout, feed_forward=False, gated=True) for _ in range(levels)])
            self.video_classifiers = nn.ModuleList([nn.Linear(2 * d, config.num_classes) for _ in range(levels)])
            self.guidance = nn.ModuleList([nn.Linear(config.num_classes, d) for _ in range(levels)])
            self.guidance_gates = nn.Parameter(torch.zeros(levels))
        self.mode_layers = nn.ModuleList(
            [DependencyExpertLayer(d, heads, config.num_classes, dropout) for _ in range(config.mode_layers)] if config.mode else []
        )
        self.class_head = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, config.num_classes, 3, padding=1))
        self.offset_head = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, 2, 3, padding=1))
        self.offset_scales = nn.Parameter(torch.ones(levels))
        prior = 0.01  # rare positives: start every class probability low (focal-loss practice)
        nn.init.constant_(self.class_head[-1].bias, -math.log((1 - prior) / prior))

    def esi_gate_values(self) -> dict[str, dict[str, float]]:
        """The learned scale of each ESI branch per stage (0 = closed, as at the start); empty without ESI."""
        if not self.config.esi:
            return {}
        return {
            f"stage_{level + 1}": {
                "reads_visual": round(self.fused_reads_visual[level].branch_gate.item(), 4),
                "reads_audio": round(self.fused_reads_audio[level].branch_gate.item(), 4),
                "guidance": round(self.guidance_gates[level].item(), 4),
            }
            for level in range(self.config.levels)
        }

    def set_input_statistics(self, visual_mean, visual_std, audio_mean, audio_std) -> None:
        for name, value in (("visual_mean", visual_mean), ("visual_std", visual_std), ("audio_mean", audio_mean), ("audio_std", audio_std)):
            value = torch.as_tensor(value, dtype=torch.float32)
            if name.endswith("std"):
                value = value.clamp_min(1e-3)
            getattr(self, name).copy_(value)

    def _pyramid(self, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor):
        stages, masks, video_logits = [], [], []
        visual, audio = self.visual_reads_audio(visual, mask, audio), self.audio_reads_visual(audio, mask, visual)
        fused = 0.5 * (visual + audio)
        for level in range(self.config.levels):
            if level > 0:
                fused, next_mask = downsample(fused, mask)
                if self.config.esi:
                    visual, _ = downsample(visual, mask)
                    audio, _ = downsample(audio, mask)
                mask = next_mask
            if self.config.esi:  # early semantics interaction: the fused sequence reads both streams again at this scale
                fused = self.fused_reads_audio[level](self.fused_reads_visual[level](fused, mask, visual), mask, audio)
            fused = self.fused_stages[level](fused, mask)
            if self.config.esi:  # stage-level semantics: a video-level classifier, its class probabilities fed back
                logits = self.video_classifiers[level](masked_video_pool(fused, mask))
                fused = masked_fill_invalid(fused + self.guidance_gates[level] * self.guidance[level](torch.sigmoid(logits)).unsqueeze(1), mask)
                video_logits.append(logits)
            stages.append(fused)
            masks.append(mask)
        return stages, masks, video_logits

    def forward(self, visual_btd: torch.Tensor, audio_btd: torch.Tensor, mask_bt: torch.Tensor) -> EsgNetOutput:
        visual = (visual_btd - self.visual_mean) / self.visual_std
        audio = (audio_btd - self.audio_mean) / self.audio_std
        visual = self.embed_visual(visual, mask_bt)
        audio = self.embed_audio(audio, mask_bt)
        stages, masks, video_logits = self._pyramid(visual, audio, mask_bt)
        gate_weights = []
        if self.mode_layers:
            # the MoDE weights are shared by the stages; each stage runs on its own, so attention stays within its time scale
            gates_per_layer: list[list[torch.Tensor]] = [[] for _ in self.mode_layers]
            for index, (features, mask) in enumerate(zip(stages, masks)):
                for layer_index, layer in enumerate(self.mode_layers):
                    features, gate = layer(features, mask)
                    gates_per_layer[layer_index].append(gate[mask])
                stages[index] = features
            gate_weights = [torch.cat(gates) for gates in gates_per_layer]
        class_logits, offsets = [], []
        for level, (features, mask) in enumerate(zip(stages, masks)):
            channels = features.transpose(1, 2)
            class_logits.append(self.class_head(channels).transpose(1, 2))
            offsets.append(F.relu(self.offset_head(channels).transpose(1, 2) * self.offset_scales[level]))
        return EsgNetOutput(class_logits, offsets, masks, video_logits, gate_weights)
