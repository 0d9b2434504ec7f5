"""Read pass: every video's features once -> corpus statistics, prototype seeds, the segment cache.

A video whose feature file is unusable is rejected with the file and the reason (manifest); the
others get a place in the segment cache, in corpus order, so later passes read them back by index.
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mertk.corpora.llp_annotations import MODALITIES, NUM_SEGMENTS, WeakLabel
from mertk.corpora.llp_features import FeatureLayout
from mertk.execution.blocks import BlockReader, read_blocks_ahead
from mertk.execution.prefetch import BackgroundWriter
from mertk.migration.anchors import PrototypeSeeds
from mertk.migration.config import VideoUnit
from mertk.migration.embedding import ModalityStats, SegmentCache
from mertk.shards.manifest import Rejection

READ_BLOCK_VIDEOS = 32  # videos per read task


@dataclass
class ReadPass:
    """The usable videos (cache order), the rejected ones, and what the fit needs from the pass."""

    units: list[VideoUnit]
    rejections: list[Rejection]
    stats: dict[str, ModalityStats]
    seeds: dict[str, PrototypeSeeds]
    cache: SegmentCache


def read_corpus(
    root: Path,
    videos: Sequence[WeakLabel],
    layout: FeatureLayout,
    cache_dir: Path,
    centre: bool,
    progress: bool,
    label: str,
    seed_modalities: Sequence[str] = MODALITIES,
) -> ReadPass:
    """Read every video's features once: statistics, prototype seeds, cache; reject bad files.

    Blocks are folded into the statistics, the seeds and the cache in video order, so the result
    does not depend on how they were read. `seed_modalities`: those that will need prototypes
    (not those with text anchors).
    """
    from mertk.console import progress_bar

    cache = SegmentCache(cache_dir, {m: layout.dim(m) for m in MODALITIES})
    cache.open_for_writing()
    stats = {m: ModalityStats.for_layout(layout, m, centre) for m in MODALITIES}
    seeds = {m: PrototypeSeeds(layout.dim(m)) for m in MODALITIES}
    units: list[VideoUnit] = []
    rejections: list[Rejection] = []
    blocks = [videos[first : first + READ_BLOCK_VIDEOS] for first in range(0, len(videos), READ_BLOCK_VIDEOS)]
    reader = BlockReader(root, layout, half_dtype=cache.dtype)
    try:
        read_blocks = read_blocks_ahead(reader, [[v.video_id for v in block] for block in blocks])
        with progress_bar(len(videos), f"{label}: reading features", enabled=progress) as advance, BackgroundWriter() as writer, closing(
            read_blocks
        ):
            for block_videos, block in zip(blocks, read_blocks):
                good = [row for row, error in enumerate(block.errors) if error is None]
                for row, error in enumerate(block.errors):
                    if error is not None:
                        video = block_videos[row]
                        rejections.append(Rejection(video.filename, f"{video.filename}: {error}", error.file))
                if good:
                    chosen = slice(None) if len(good) == len(block_videos) else np.array(good)
                    writer.submit(cache.append_block, {m: block.half[m][chosen] for m in MODALITIES})
                    classes = [block_videos[row].label_indices for row in good]
                    for modality in MODALITIES:
                        sums_n_d = block.sums[modality][chosen]
                        # Rejected rows are zeros: the block's sums of squares are those of the good rows.
                        stats[modality].add_block(sums_n_d, block.part_squares[modality], len(good) * NUM_SEGMENTS)
                        if modality in seed_modalities:
                            seeds[modality].add_block(classes, sums_n_d)
                    for row in good:
                        video = block_videos[row]
                        units.append(VideoUnit(len(units), video.filename, video.video_id, video.split, video.label_indices))
                advance(len(block_videos))
            writer.finish()
    finally:
        cache.close()
    return ReadPass(units, rejections, stats, seeds, cache)
