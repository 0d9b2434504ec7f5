"""The hybrid-attention AVVP parser, with EAR-style uni-modal heads on the pre-fusion features.

Forward pass for a batch of videos, audio (b, 10, Da) and visual (b, 10, Dv):

1. per-modality standardisation (per-dimension mean and std of the train split, stored in the
   model as buffers: res152 features share a large positive offset that would otherwise swamp
   the projection), then projection to `d_model` (linear, layer norm, ReLU, dropout);
2. `layers` hybrid-attention blocks: each modality attends to itself (self-attention over the 10
   segments) and to the other modality (cross-attention), the two results are added to its
   input (residual), followed by a feed-forward sublayer; both with layer norm;
3. a shared segment classifier -> segment probabilities p (b, 2 modalities, 10, 25);
4. attentive multiple-instance pooling: per class, softmax attention over the 10 segments within
   each modality and softmax attention over the 2 modalities; the video probability is the
   attention-weighted sum of p (b, 25).

Uni-modal heads (when `unimodal_heads`): a separate classifier per modality on the *projected,
pre-fusion* features gives q (b, 2, 10, 25) and its own attentive pooling a video probability.
The trainer ties p softly to q (see mertk.training.avvp).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

MODEL_NAME = "avvp_hybrid_attention_parser"
NUM_CLASSES = 25


@dataclass
class ParserConfig:
    audio_dim: int
    visual_dim: int
    d_model: int = 128
    heads: int = 4
    layers: int = 1
    dropout: float = 0.2
    unimodal_heads: bool = True
    num_classes: int = NUM_CLASSES

    def to_dict(self) -> dict:
        return asdict(self)


class HybridAttentionBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_attention = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))
        self.norm_feed_forward = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_btd: torch.Tensor, other_btd: torch.Tensor) -> torch.Tensor:
        own, _ = self.self_attention(x_btd, x_btd, x_btd, need_weights=False)
        cross, _ = self.cross_attention(x_btd, other_btd, other_btd, need_weights=False)
        x_btd = self.norm_attention(x_btd + self.dropout(own) + self.dropout(cross))
        return self.norm_feed_forward(x_btd + self.dropout(self.feed_forward(x_btd)))


class AttentiveMilPooling(nn.Module):
    """Segment probabilities (b, 2, t, c) + features (b, 2, t, d) -> video probability (b, c)."""

    def __init__(self, d_model: int, num_classes: int):
        super().__init__()
        self.temporal = nn.Linear(d_model, num_classes)
        self.modal = nn.Linear(d_model, num_classes)

    def forward(self, probabilities_bmtc: torch.Tensor, features_bmtd: torch.Tensor) -> torch.Tensor:
        temporal = torch.softmax(self.temporal(features_bmtd), dim=2)
        modal = torch.softmax(self.modal(features_bmtd), dim=1)
        return (temporal * modal * probabilities_bmtc).sum(dim=(1, 2)).clamp(1e-6, 1 - 1e-6)


@dataclass
class ParserOutput:
    segment_bmtc: torch.Tensor  # fused segment probabilities, modality 0 audio, 1 visual
    video_bc: torch.Tensor  # fused video probabilities
    unimodal_segment_bmtc: torch.Tensor | None
    unimodal_video_bc: torch.Tensor | None


def _projection(in_dim: int, d_model: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, d_model), nn.LayerNorm(d_model), nn.ReLU(), nn.Dropout(dropout))


class HybridAttentionParser(nn.Module):
    def __init__(self, config: ParserConfig):
        super().__init__()
        self.config = config
        for name, dim in (("audio", config.audio_dim), ("visual", config.visual_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.project_audio = _projection(config.audio_dim, config.d_model, config.dropout)
        self.project_visual = _projection(config.visual_dim, config.d_model, config.dropout)
        self.blocks_audio = nn.ModuleList(HybridAttentionBlock(config.d_model, config.heads, config.dropout) for _ in range(config.layers))
        self.blocks_visual = nn.ModuleList(HybridAttentionBlock(config.d_model, config.heads, config.dropout) for _ in range(config.layers))
        self.segment_classifier = nn.Linear(config.d_model, config.num_classes)
        self.pooling = AttentiveMilPooling(config.d_model, config.num_classes)
        if config.unimodal_heads:
            self.unimodal_audio = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.ReLU(), nn.Linear(config.d_model, config.num_classes))
            self.unimodal_visual = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.ReLU(), nn.Linear(config.d_model, config.num_classes))
            self.unimodal_pooling = AttentiveMilPooling(config.d_model, config.num_classes)

    def set_input_statistics(self, audio_mean_d, audio_std_d, visual_mean_d, visual_std_d) -> None:
        """Per-dimension mean and std of the training features (std floored to avoid division by ~0)."""
        for name, value in (("audio_mean", audio_mean_d), ("audio_std", audio_std_d), ("visual_mean", visual_mean_d), ("visual_std", visual_std_d)):
            value = torch.as_tensor(value, dtype=torch.float32)
            getattr(self, name).copy_(value.clamp_min(1e-3) if name.endswith("std") else value)

    def forward(self, audio_btd: torch.Tensor, visual_btd: torch.Tensor) -> ParserOutput:
        audio_btd = (audio_btd - self.audio_mean) / self.audio_std
        visual_btd = (visual_btd - self.visual_mean) / self.visual_std
        audio, visual = self.project_audio(audio_btd), self.project_visual(visual_btd)
        pre_fusion = torch.stack([audio, visual], dim=1)  # (b, 2, t, d)
        for block_audio, block_visual in zip(self.blocks_audio, self.blocks_visual):
            audio, visual = block_audio(audio, visual), block_visual(visual, audio)
        fused = torch.stack([audio, visual], dim=1)
        segment = torch.sigmoid(self.segment_classifier(fused))
        video = self.pooling(segment, fused)
        unimodal_segment = unimodal_video = None
        if self.config.unimodal_heads:
            unimodal_segment = torch.sigmoid(
                torch.stack([self.unimodal_audio(pre_fusion[:, 0]), self.unimodal_visual(pre_fusion[:, 1])], dim=1)
            )
            unimodal_video = self.unimodal_pooling(unimodal_segment, pre_fusion)
        return ParserOutput(segment, video, unimodal_segment, unimodal_video)
