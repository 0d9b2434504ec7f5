"""Caption and instruction/response pairs for one sample.

Policy: the caption and every response speak of facial motion only where the dual constraint
holds (the flow shows the labelled AU's FACS motion). Labelled AUs the flow does not show, and
motion no label explains, are stated as such, never as facts about the face. Wording varies
between samples through templates picked by a generator seeded from (seed, sample_id, task),
so the same seed always gives the same text.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Sequence

from mertk.au.facs import au_spec
from mertk.captions.intensity import IntensityBins

INSTRUCTION_TASKS = ("describe_motion", "name_aus", "classify_emotion", "region_question", "temporal_question")
FRAME_RATE = 200  # CASME II; a summary carries its corpus' own rate
AU_SOURCES = ("labels", "flow")  # AU-labelled motion the flow confirms / what the flow alone shows (no AU coding)
SIDE_WORDS = {"L": "left", "R": "right", None: "both sides"}
REGION_WORDS = {
    "inner_brow": "inner brow",
    "outer_brow": "outer brow",
    "upper_lid": "upper eyelid",
    "lower_lid": "lower eyelid",
    "cheek": "cheek",
    "nose_wing": "nose wing",
    "upper_lip": "upper lip",
    "lip_corner": "lip corner",
    "chin": "chin",
}


@dataclass(frozen=True)
class SupportedMotion:
    """An AU the dual constraint supports: side None = both sides; magnitude in percent of IOD."""

    au: int
    side: str | None
    magnitude: float


@dataclass(frozen=True)
class RegionAnswer:
    """What the region question may say about one (region, side)."""

    region: str
    side: str
    magnitude: float
    direction_deg: float
    supported_au: int | None  # a supported AU moving this region, if any
    unlabelled: bool  # strong motion that no labelled AU explains


@dataclass(frozen=True)
class MotionSummary:
    """Everything the texts of one sample are made from."""

    sample_id: str
    emotion: str
    supported: tuple[SupportedMotion, ...]
    unsupported_aus: tuple[int, ...]  # labelled AUs the flow does not show
    regions: tuple[RegionAnswer, ...]
    onset_frame: int
    apex_frame: int
    offset_frame: int
    apex_estimated: bool
    curve_peak_frame: int | None
    fps: float = FRAME_RATE
    au_source: str = "labels"  # "flow": the clip has no AU coding; `supported` is what the flow alone shows


@dataclass(frozen=True)
class Instruction:
    task: str
    instruction: str
    response: str


def _rng(seed: int, sample_id: str, task: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{sample_id}\x00{task}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _phrase(au: int) -> str:
    spec = au_spec(au)
    return spec.phrase if spec else f"AU{au}"


def _au_name(au: int) -> str:
    spec = au_spec(au)
    return f"AU{au} ({spec.name})" if spec else f"AU{au}"


def _side_text(side: str | None) -> str:
    return "on both sides" if side is None else f"on the {SIDE_WORDS[side]} side"


def _motion_clauses(summary: MotionSummary, bins: IntensityBins) -> list[str]:
    return [f"{bins.word(m.magnitude)} {_phrase(m.au)} {_side_text(m.side)} (AU{m.au})" for m in summary.supported]


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def compose_caption(summary: MotionSummary, bins: IntensityBins) -> str:
    """One or two sentences naming only the supported motions, with side and intensity; for a
    clip without AU coding, the motions the flow shows, saying that no AU coding backs them."""
    clauses = _motion_clauses(summary, bins)
    if summary.au_source == "flow":
        if not clauses:
            return "The optical flow shows no coherent facial motion between onset and apex, and no AU coding is given for this clip."
        return f"Between onset and apex the optical flow shows a {_join(clauses)}, each named with the Action Unit whose motion it fits best; no AU coding backs this description."
    if not clauses:
        return "No facial motion is supported by both the optical flow and the AU labels between onset and apex."
    text = _join(clauses)
    return f"Between onset and apex the face shows a {text}."


def _direction_words(direction_deg: float, side: str) -> str:
    """'up', 'down and outward', ... from an image-axes angle (90 = up) on the subject's side."""
    import math

    dx, dy_up = math.cos(math.radians(direction_deg)), math.sin(math.radians(direction_deg))
    vertical = "up" if dy_up > 0.38 else "down" if dy_up < -0.38 else ""
    outward_x = 1.0 if side == "L" else -1.0
    horizontal = ""
    if abs(dx) > 0.38:
        horizontal = "outward" if dx * outward_x > 0 else "toward the midline"
    return " and ".join(w for w in (vertical, horizontal) if w) or "in place"


_DESCRIBE = (
    "Describe the facial muscle movements between the onset and the apex of this micro-expression.",
    "What local facial motion does this micro-expression show?",
    "Which parts of the face move in this clip, and how strongly?",
    "Summarise the motion visible from onset to apex.",
)
_NAME_AUS = (
    "Which Action Units are active in this micro-expression?",
    "List the FACS Action Units that this clip shows.",
    "Name the Action Units visible between onset and apex.",
)
_CLASSIFY = (
    "Which emotion does this micro-expression convey? Explain from the facial motion.",
    "Classify the emotion of this micro-expression and justify it with the observed movements.",
    "What is the estimated emotion here, and which motion supports that reading?",
)
_REGION = (
    "Does the {region} on the {side} side move between onset and apex?",
    "Is there motion at the {side} {region}?",
    "Look at the {side} {region}: what does it do?",
)
_TEMPORAL = (
    "At which frame does this micro-expression reach its apex?",
    "When does the motion peak, and how long does it take to get there?",
    "Give the onset, apex and offset frames of this micro-expression.",
)


def _describe(summary: MotionSummary, bins: IntensityBins, rng: random.Random) -> Instruction:
    return Instruction("describe_motion", rng.choice(_DESCRIBE), compose_caption(summary, bins))


def _name_aus(summary: MotionSummary, rng: random.Random) -> Instruction:
    if summary.au_source == "flow":
        names = [f"{_au_name(m.au)} {_side_text(m.side)}" for m in summary.supported]
        response = "No AU coding is given for this clip. " + (
            f"The motion the optical flow shows fits {_join(names)} best." if names else "The optical flow shows no coherent facial motion."
        )
        return Instruction("name_aus", rng.choice(_NAME_AUS), response)
    if summary.supported:
        names = [f"{_au_name(m.au)} {_side_text(m.side)}" for m in summary.supported]
        response = f"{_join(names)}."
    else:
        response = "None of the labelled Action Units is confirmed by the measured motion."
    if summary.unsupported_aus:
        listed = _join([f"AU{au}" for au in summary.unsupported_aus])
        response += f" The coding also lists {listed}, but the optical flow does not show its motion."
    return Instruction("name_aus", rng.choice(_NAME_AUS), response)


def _classify(summary: MotionSummary, bins: IntensityBins, rng: random.Random) -> Instruction:
    clauses = _motion_clauses(summary, bins)
    if clauses and summary.au_source == "flow":
        rationale = f"The optical flow shows a {_join(clauses)} (read from the flow; no AU coding backs it), the motion pattern that goes with {summary.emotion}."
    elif clauses:
        rationale = f"The face shows a {_join(clauses)}, the motion pattern that goes with {summary.emotion}."
    else:
        rationale = "No labelled Action Unit is confirmed by the flow, so the reading rests on the coders' judgement, not on visible motion."
    return Instruction("classify_emotion", rng.choice(_CLASSIFY), f"{summary.emotion.capitalize()}. {rationale}")


def _region(summary: MotionSummary, bins: IntensityBins, rng: random.Random) -> Instruction:
    # Ask about a supported region half of the time (when there is one), otherwise any region.
    moving = [r for r in summary.regions if r.supported_au is not None]
    pool = moving if moving and rng.random() < 0.5 else list(summary.regions)
    answer = rng.choice(pool)
    region_words, side_words = REGION_WORDS[answer.region], SIDE_WORDS[answer.side]
    question = rng.choice(_REGION).format(region=region_words, side=side_words)
    if answer.supported_au is not None:
        response = (
            f"Yes. The {side_words} {region_words} moves {_direction_words(answer.direction_deg, answer.side)} "
            f"({bins.word(answer.magnitude)}, {answer.magnitude:.1f}% of the inter-ocular distance), "
            f"the {_phrase(answer.supported_au)} of AU{answer.supported_au}"
            + (", read from the flow (no AU coding is given for this clip)." if summary.au_source == "flow" else ".")
        )
    elif answer.unlabelled:
        response = (
            f"The optical flow shows motion there ({answer.magnitude:.1f}% of the inter-ocular distance), "
            "but no labelled Action Unit accounts for it, so it is not described as an expression."
        )
    else:
        response = f"No supported motion: the {side_words} {region_words} shows no movement that a labelled Action Unit accounts for."
    return Instruction("region_question", question, response)


def _temporal(summary: MotionSummary, rng: random.Random) -> Instruction:
    rise_ms = (summary.apex_frame - summary.onset_frame) * 1000 / summary.fps
    total_ms = (summary.offset_frame - summary.onset_frame) * 1000 / summary.fps
    how = "estimated from the peak of the motion curve" if summary.apex_estimated else "as coded"
    response = (
        f"Onset at frame {summary.onset_frame}, apex at frame {summary.apex_frame} ({how}), offset at frame "
        f"{summary.offset_frame}: the motion peaks {rise_ms:.0f} ms after onset and the whole expression lasts {total_ms:.0f} ms."
    )
    return Instruction("temporal_question", rng.choice(_TEMPORAL), response)


def build_instructions(summary: MotionSummary, bins: IntensityBins, seed: int = 0) -> list[Instruction]:
    """The five tasks of one sample, in INSTRUCTION_TASKS order."""

    def rng(task: str) -> random.Random:
        return _rng(seed, summary.sample_id, task)

    return [
        _describe(summary, bins, rng("describe_motion")),
        _name_aus(summary, rng("name_aus")),
        _classify(summary, bins, rng("classify_emotion")),
        _region(summary, bins, rng("region_question")),
        _temporal(summary, rng("temporal_question")),
    ]
