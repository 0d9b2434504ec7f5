"""Export Uni-MER shards as LLaVA-style or ShareGPT-style JSON with image files beside it.

Layouts (one record per sample, its instruction pairs as consecutive turns; the image tokens
sit in the first user turn only, one `<image>` per image):

llava     DIR/unimer_llava.json: [{"id", "image", "conversations": [{"from": "human"|"gpt",
          "value"}...]}]; "image" is one relative path, or a list of paths when several images
          are exported (the LLaVA-NeXT / OneVision convention).
sharegpt  DIR/unimer_sharegpt.json: [{"messages": [{"role": "user"|"assistant", "content"}...],
          "images": [relative paths]}] and DIR/dataset_info.json, the LLaMA-Factory entry that
          names these columns and tags.
Images:   DIR/images/<subject>_<episode>_apex.png (aligned apex face, 112x112 grey) and
          DIR/images/<subject>_<episode>_flow.png (onset->apex flow, hue = direction,
          brightness = magnitude, 112x112).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertk.errors import InputError
from mertk.flow.draw import flow_picture
from mertk.report.html import png_bytes
from mertk.shards.dataset import has_manifest, open_shards
from mertk.shards.layout import MANIFEST_NAME
from mertk.shards.io import write_bytes_atomic

EXPORT_FORMATS = ("llava", "sharegpt")
IMAGE_CHOICES = ("apex", "apex+flow")
IMAGE_DIR = "images"
DATASET_NAME = "unimer"
COMPACT = 28


class ExportError(InputError):
    """The input is not a Uni-MER output directory, or the format is unknown."""


@dataclass
class ExportSummary:
    json_path: Path
    records: int
    images: int


def _image_files(row: dict, out_dir: Path, images: str) -> list[str]:
    stem = row["sample_id"].replace("/", "_")
    relative = [f"{IMAGE_DIR}/{stem}_apex.png"]
    write_bytes_atomic(out_dir / relative[0], row["apex_face_png"])
    if images == "apex+flow":
        flow_3hw = np.asarray(row["apex_flow_3hw"], dtype=np.float32).reshape(3, COMPACT, COMPACT)
        relative.append(f"{IMAGE_DIR}/{stem}_flow.png")
        write_bytes_atomic(out_dir / relative[1], png_bytes(flow_picture(flow_3hw[0], flow_3hw[1], size=112)))
    return relative


def _turns(row: dict, image_count: int) -> list[tuple[str, str]]:
    """(question, answer) pairs; the first question carries the image tokens."""
    turns = []
    for index, pair in enumerate(row["instructions"]):
        question = pair["instruction"]
        if index == 0:
            question = "<image>" * image_count + "\n" + question
        turns.append((question, pair["response"]))
    return turns


def export_instructions(unimer_dir: Path | str, out_dir: Path | str, fmt: str = "llava", images: str = "apex+flow") -> ExportSummary:
    """Write DIR/<json> and DIR/images/ from the shards of `unimer_dir` (same input -> same bytes)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if images not in IMAGE_CHOICES:
        raise ExportError(f"unknown image choice {images!r}; choose one of {', '.join(IMAGE_CHOICES)}")
    unimer_dir, out_dir = Path(unimer_dir), Path(out_dir)
    if not has_manifest(unimer_dir) and has_manifest(unimer_dir / "unimer"):
        unimer_dir = unimer_dir / "unimer"  # accept OUT as well as OUT/unimer
    if not has_manifest(unimer_dir):
        raise ExportError(f"{unimer_dir}: no {MANIFEST_NAME}; pass the unimer directory written by `mertk build-unimer`")
    dataset = open_shards(unimer_dir, "unimer_sample", produced_by="`mertk build-unimer`")
    table = dataset.read(["sample_id", "instructions", "apex_face_png", "apex_flow_3hw"])
    records = []
    image_count = 0
    for row in table.to_pylist():
        paths = _image_files(row, out_dir, images)
        image_count += len(paths)
        turns = _turns(row, len(paths))
        if fmt == "llava":
            conversations = []
            for question, answer in turns:
                conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            records.append({"id": row["sample_id"], "image": paths[0] if len(paths) == 1 else paths, "conversations": conversations})
        else:
            messages = []
            for question, answer in turns:
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            records.append({"id": row["sample_id"], "messages": messages, "images": paths})
    json_path = out_dir / f"unimer_{fmt}.json"
    write_bytes_atomic(json_path, (json.dumps(records, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    if fmt == "sharegpt":
        info = {
            DATASET_NAME: {
                "file_name": json_path.name,
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "images": "images"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
            }
        }
        write_bytes_atomic(out_dir / "dataset_info.json", (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return ExportSummary(json_path, len(records), image_count)
