"""Points of a temporal pyramid: which event each point learns, how its outputs become segments, soft-NMS.

A point is step i of pyramid stage l, at position i * 2**l in steps of stage 0 (the feature steps of
the video); its stride is 2**l. Event boundaries are handled in fractional steps of stage 0
(`mertk.corpora.unav100.seconds_to_steps`).

Target assignment (the anchor-free rule of the UnAV/ActionFormer family, our code): a point is
positive for an event when it lies inside the event's centre region (the event clipped to
`centre_radius` strides around its centre) and its larger distance to the event's boundaries falls
in the stage's regression range. Among the events a point may learn it takes the shortest; its
class target is every class among events of (within 1e-3 steps) that length, its offset target
the distances to the shortest event's start and end in strides.

Decoding keeps the `candidates` highest (point, class) scores of a video, turns them into
segments in seconds (clipped to the video), and ranks them with class-wise Gaussian soft-NMS:
repeatedly the best remaining segment of each (video, class) group is kept and every other
segment of its group has its score multiplied by exp(-tIoU**2 / sigma). The loop runs over the
rank inside a group (at most `max_segments` rounds), vectorised over all groups at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mertk.corpora.unav100 import FIRST_CENTRE_SECONDS, STEP_SECONDS


@dataclass(frozen=True)
class PointGrid:
    position_p: torch.Tensor  # (points,) steps of stage 0
    stride_p: torch.Tensor
    low_p: torch.Tensor  # regression range, steps of stage 0
    high_p: torch.Tensor
    level_sizes: tuple[int, ...]


def point_grid(steps: int, regression_ranges: list[list[float]], device: torch.device | str = "cpu") -> PointGrid:
    """The points of a pyramid over `steps` steps (stage sizes halve, rounding up, as the pooling does)."""
    positions, strides, lows, highs, sizes = [], [], [], [], []
    size = steps
    for level, (low, high) in enumerate(regression_ranges):
        if level > 0:
            size = (size + 1) // 2
        stride = 2**level
        positions.append(torch.arange(size, dtype=torch.float32) * stride)
        strides.append(torch.full((size,), float(stride)))
        lows.append(torch.full((size,), float(low)))
        highs.append(torch.full((size,), float(high)))
        sizes.append(size)
    return PointGrid(*(torch.cat(parts).to(device) for parts in (positions, strides, lows, highs)), tuple(sizes))


def assign_targets(
    grid: PointGrid,
    segments_bg2: torch.Tensor,
    labels_bg: torch.Tensor,
    valid_bg: torch.Tensor,
    num_classes: int,
    centre_radius: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class targets (b, points, C), offset targets (b, points, 2) in strides, positive mask (b, points)."""
    position = grid.position_p[None, :, None]
    stride = grid.stride_p[None, :, None]
    start, end = segments_bg2[..., 0][:, None, :], segments_bg2[..., 1][:, None, :]
    to_start, to_end = position - start, end - position
    centre = 0.5 * (start + end)
    inside_centre = (position - torch.maximum(start, centre - centre_radius * stride) > 0) & (
        torch.minimum(end, centre + centre_radius * stride) - position > 0
    )
    farthest = torch.maximum(to_start, to_end)
    in_range = (farthest >= grid.low_p[None, :, None]) & (farthest <= grid.high_p[None, :, None])
    eligible = inside_centre & in_range & valid_bg[:, None, :]
    length = torch.where(eligible, (end - start).expand_as(eligible), torch.full_like(to_start, float("inf")))
    shortest, shortest_index = length.min(dim=2)
    positive = torch.isfinite(shortest)
    chosen = eligible & (length <= shortest[..., None] + 1e-3)
    one_hot = F.one_hot(labels_bg.clamp_min(0), num_classes).to(segments_bg2.dtype) * valid_bg[..., None]
    class_target = torch.bmm(chosen.to(segments_bg2.dtype), one_hot).clamp(max=1.0)
    index = shortest_index[..., None]
    offsets = torch.cat([to_start.gather(2, index), to_end.gather(2, index)], dim=2) / grid.stride_p[None, :, None]
    return class_target, torch.where(positive[..., None], offsets, torch.zeros_like(offsets)), positive


def steps_to_seconds(steps: torch.Tensor) -> torch.Tensor:
    return FIRST_CENTRE_SECONDS + STEP_SECONDS * steps


def segment_tiou_torch(start_a, end_a, start_b, end_b) -> torch.Tensor:
    intersection = (torch.minimum(end_a, end_b) - torch.maximum(start_a, start_b)).clamp_min(0)
    union = (end_a - start_a) + (end_b - start_b) - intersection
    return intersection / union.clamp_min(1e-9)


def group_then_score_order(group_n: torch.Tensor, score_n: torch.Tensor) -> torch.Tensor:
    """Indices sorting by group, then by score from high to low (ties keep input order)."""
    by_score = torch.argsort(score_n, descending=True, stable=True)
    return by_score[torch.argsort(group_n[by_score], stable=True)]


def soft_nms(
    start_n: torch.Tensor, end_n: torch.Tensor, score_n: torch.Tensor, group_n: torch.Tensor,
    sigma: float = 0.5, min_score: float = 1e-3, max_per_group: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Gaussian soft-NMS within each group; returns (kept indices into the inputs, their decayed scores)."""
    if len(score_n) == 0:
        return torch.zeros(0, dtype=torch.long, device=score_n.device), score_n.new_zeros(0)
    order = group_then_score_order(group_n, score_n)
    groups, counts = torch.unique_consecutive(group_n[order], return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(order), device=order.device) - torch.repeat_interleave(first, counts)
    row = torch.repeat_interleave(torch.arange(len(groups), device=order.device), counts)
    width = int(counts.max())

    def padded(values: torch.Tensor, fill: float) -> torch.Tensor:  # (groups, width), group members in score order
        return torch.full((len(groups), width), fill, dtype=values.dtype, device=values.device).index_put_((row, slot), values[order])

    start, end = padded(start_n, 0.0), padded(end_n, 0.0)
    score = padded(score_n, -1.0)
    source = padded(torch.arange(len(order), device=order.device), -1)  # input row of each slot
    alive = score > min_score
    kept_score = torch.full_like(score, -1.0)
    rows = torch.arange(len(groups), device=order.device)
    for _ in range(min(width, max_per_group)):
        if not bool(alive.any()):
            break
        has = alive.any(dim=1)
        best = torch.where(alive, score, torch.full_like(score, -2.0)).argmax(dim=1)
        kept_score[rows[has], best[has]] = score[rows[has], best[has]]
        alive[rows, best] = False
        overlap = segment_tiou_torch(start[rows, best][:, None], end[rows, best][:, None], start, end)
        score = torch.where(alive & has[:, None], score * torch.exp(-(overlap**2) / sigma), score)
        alive &= score > min_score
    kept = kept_score > 0
    return source[kept], kept_score[kept]


@dataclass
class VideoSegments:
    """Decoded segments of a batch: one row per segment."""

    video_n: torch.Tensor  # index of the video in the batch
    label_n: torch.Tensor
    start_n: torch.Tensor  # seconds
    end_n: torch.Tensor
    score_n: torch.Tensor


def decode_segments(
    class_logits: list[torch.Tensor], offsets: list[torch.Tensor], masks: list[torch.Tensor], grid: PointGrid,
    durations_b: torch.Tensor, candidates: int = 200, max_segments: int = 100, sigma: float = 0.5, min_score: float = 1e-3,
) -> VideoSegments:  # fmt: skip
    """Segments (seconds) of each video in the batch after soft-NMS, at most `max_segments` a video."""
    scores_bpc = torch.sigmoid(torch.cat(class_logits, dim=1)) * torch.cat(masks, dim=1)[..., None]
    offsets_bp2 = torch.cat(offsets, dim=1)
    batch, points, classes = scores_bpc.shape
    top_scores, top_index = scores_bpc.reshape(batch, -1).topk(min(candidates, points * classes), dim=1)
    point, label = top_index // classes, top_index % classes
    video = torch.arange(batch, device=scores_bpc.device)[:, None].expand_as(point)
    stride = grid.stride_p[point]
    centre = grid.position_p[point]
    start = steps_to_seconds(centre - offsets_bp2[video, point, 0] * stride)
    end = steps_to_seconds(centre + offsets_bp2[video, point, 1] * stride)
    duration = durations_b[:, None].to(start.dtype).expand_as(start)
    start, end = start.clamp_min(0).minimum(duration), end.clamp_min(0).minimum(duration)
    usable = (top_scores > min_score) & (end - start > 0.01)
    video, label, start, end, top_scores = (values[usable] for values in (video, label, start, end, top_scores))
    kept, kept_scores = soft_nms(start, end, top_scores, video * classes + label, sigma, min_score, max_segments)
    video, label, start, end = video[kept], label[kept], start[kept], end[kept]
    # at most max_segments per video, best first
    order = group_then_score_order(video, kept_scores)
    video, label, start, end, kept_scores = (values[order] for values in (video, label, start, end, kept_scores))
    _, counts = torch.unique_consecutive(video, return_counts=True)
    rank = torch.arange(len(video), device=video.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    keep = rank < max_segments
    return VideoSegments(video[keep], label[keep], start[keep], end[keep], kept_scores[keep])
