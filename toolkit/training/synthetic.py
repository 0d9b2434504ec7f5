"""Small schema-valid Uni-MER directories with a learnable signal, for trainer tests and benchmarks.

Not a corpus (the sample CASME II corpus and `mertk build-unimer` are that): these tables skip
face detection and flow, so a test or a throughput benchmark of the trainer alone runs in seconds.
Each emotion moves one region (happiness: lip corners up, surprise: brows up, disgust: nose
wings up, repression: chin up, others: a weak random motion); the flow, the region statistics,
the face crop and the caption all carry it, with noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import ShardResult
from mertk.shards.schema import load_schema

_EMOTIONS = ("happiness", "disgust", "surprise", "repression", "others")
_THREE_CLASS = {"happiness": "positive", "disgust": "negative", "repression": "negative", "surprise": "surprise", "others": None}
# emotion -> (region, AU, rows of the 28x28 crop it moves, dy sign)
_MOTION = {
    "happiness": ("lip_corner", 12, (18, 22), -1.0),
    "disgust": ("nose_wing", 9, (12, 16), -1.0),
    "surprise": ("inner_brow", 1, (4, 8), -1.0),
    "repression": ("chin", 17, (23, 27), -1.0),
    "others": ("cheek", 6, (14, 18), 0.3),
}


def synthetic_unimer_rows(subjects: int = 5, per_subject: int = 10, seed: int = 0, noise: float = 0.6) -> list[dict]:
    import cv2

    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        subject = f"sub{s + 1:02d}"
        subject_gain = rng.uniform(0.6, 1.4)  # subjects differ in how strongly they move
        for k in range(per_subject):
            emotion = _EMOTIONS[(k + s) % len(_EMOTIONS)]
            region, au, (top, bottom), dy_sign = _MOTION[emotion]
            side = ("L", "R")[k % 2]
            strength = subject_gain * rng.uniform(0.7, 1.3) * (0.4 if emotion == "others" else 1.0)
            flow = rng.normal(0.0, noise, size=(3, 28, 28)).astype(np.float32)
            columns = slice(0, 14) if side == "L" else slice(14, 28)
            flow[1, top:bottom, columns] += dy_sign * 2.0 * strength
            flow[2] = np.abs(flow[2]) * 0.1
            flow[2, top:bottom, columns] += 0.5 * strength
            face = np.clip(rng.normal(128, 20, size=(112, 112)), 0, 255).astype(np.uint8)
            face[top * 4 : bottom * 4, columns.start * 4 : columns.stop * 4] = np.clip(
                face[top * 4 : bottom * 4, columns.start * 4 : columns.stop * 4].astype(np.int32) + int(40 * strength), 0, 255
            ).astype(np.uint8)
            ok, png = cv2.imencode(".png", face)
            assert ok
            magnitude = float(abs(2.0 * strength))
            dy = float(dy_sign * 2.0 * strength)
            supported = emotion != "others" and bool(rng.random() > 0.15)
            regions = [
                {"region": r, "side": sd, "dx": float(rng.normal(0, 0.2)), "dy": float(rng.normal(0, 0.2)),
                 "magnitude": float(abs(rng.normal(0, 0.3))), "direction_deg": 0.0, "coherence": 0.3, "strain": 0.05}
                for r in ("inner_brow", "nose_wing", "lip_corner", "chin", "cheek") for sd in ("L", "R") if r != region
            ]  # fmt: skip
            regions.append({"region": region, "side": side, "dx": 0.0, "dy": dy, "magnitude": magnitude,
                            "direction_deg": 90.0 if dy < 0 else -90.0, "coherence": 0.8, "strain": 0.5 * strength})
            caption = f"The {'left' if side == 'L' else 'right'} {region.replace('_', ' ')} moves {'up' if dy < 0 else 'down'}." if supported else "No clear motion."
            rows.append(
                {
                    "sample_id": f"{subject}/EP{k:02d}_01",
                    "dataset": "casme2",
                    "subject": subject,
                    "episode": f"EP{k:02d}_01",
                    "onset_frame": 10,
                    "apex_frame": 20,
                    "apex_estimated": False,
                    "offset_frame": 30,
                    "emotion": emotion,
                    "emotion_5class": emotion,
                    "emotion_3class": _THREE_CLASS[emotion],
                    "au_labels": [{"au": au, "side": side}],
                    "regions": regions,
                    "au_evidence": [{"au": au, "side": side, "region": region, "score": 0.8 if supported else -0.1, "supported": supported}],
                    "unlabelled_motion": [],
                    "caption": caption,
                    "instructions": [
                        {"task": task, "instruction": "q", "response": "a"}
                        for task in ("describe_motion", "name_aus", "classify_emotion", "region_question")
                    ],
                    "flow_method": "dis",
                    "face_detected": True,
                    "inter_ocular_px": 60.0,
                    "apex_flow_3hw": flow.reshape(-1).tolist(),
                    "apex_face_png": png.tobytes(),
                }
            )
    return rows


def write_synthetic_unimer(out_dir: Path | str, subjects: int = 5, per_subject: int = 10, seed: int = 0, shard_size: int = 64) -> Path:
    """Write a synthetic Uni-MER directory (shards + manifest) like `mertk build-unimer` does."""
    schema = load_schema("unimer_sample", 1)
    rows = synthetic_unimer_rows(subjects, per_subject, seed)

    def process(chunk: list[dict]) -> ShardResult:
        return ShardResult(schema.table_from_rows(chunk), [row["sample_id"] for row in chunk])

    run_sharded(out_dir, schema, rows, process, command="synthetic", parameters={"seed": seed}, shard_size=shard_size, progress=False)
    return Path(out_dir)
