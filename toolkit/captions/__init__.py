"""Captions and instruction/response pairs that state only dual-constraint-supported motion."""
from mertk.captions.intensity import IntensityBins, calibrate_intensity_bins
from mertk.captions.instructions import (
    INSTRUCTION_TASKS,
    Instruction,
    MotionSummary,
    SupportedMotion,
    build_instructions,
    compose_caption,
)

__all__ = [
    "INSTRUCTION_TASKS",
    "Instruction",
    "IntensityBins",
    "MotionSummary",
    "SupportedMotion",
    "build_instructions",
    "calibrate_intensity_bins",
    "compose_caption",
]
