"""dlib face box + 68 landmarks on real public-domain photos that ship with packages."""
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage.data
from skimage.io import imread

from mertk.face import (
    PREDICTOR_ENV_VAR,
    FaceBox,
    PredictorNotFoundError,
    box_from_landmarks,
    default_predictor_path,
    detect_face,
    find_face,
    inter_ocular_distance,
    landmarks_68,
    resolve_predictor_path,
    to_gray,
)


def _grace_hopper_gray():
    return to_gray(imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))


@pytest.mark.parametrize("load", [lambda: to_gray(skimage.data.astronaut()), _grace_hopper_gray], ids=["astronaut", "grace_hopper"])
def test_finds_face_and_68_landmarks_on_real_photos(load):
    gray = load()
    face = find_face(gray)
    assert face.detected
    assert face.points_68_2.shape == (68, 2) and face.points_68_2.dtype == np.float32
    box = face.box
    inside = (face.points_68_2[:, 0] > box.left - 0.2 * box.width) & (face.points_68_2[:, 0] < box.right + 0.2 * box.width)
    assert inside.all()
    # Anatomy: subject's right eye (36-41) on the image left, brows above eyes, mouth below nose.
    assert face.points_68_2[36:42, 0].mean() < face.points_68_2[42:48, 0].mean()
    assert face.points_68_2[17:27, 1].mean() < face.points_68_2[36:48, 1].mean() < face.points_68_2[48:68, 1].mean()
    assert 0.25 * box.width < face.inter_ocular_px < 0.7 * box.width


def _iou(a: FaceBox, b: FaceBox) -> float:
    inter = max(0, min(a.right, b.right) - max(a.left, b.left)) * max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    return inter / (a.area + b.area - inter)


@pytest.mark.parametrize("load", [lambda: to_gray(skimage.data.astronaut()), _grace_hopper_gray], ids=["astronaut", "grace_hopper"])
def test_box_from_landmarks_matches_the_detector_and_undoes_a_too_large_box(load):
    gray = load()
    face = find_face(gray)
    assert _iou(box_from_landmarks(face.points_68_2, gray.shape), face.box) > 0.75
    # A box one pyramid step (1.2x) too large: the fit in the box its landmarks imply comes back
    # to the fit in the detector's own box.
    box = face.box
    cx, cy, half_w, half_h = (box.left + box.right) / 2, (box.top + box.bottom) / 2, 0.6 * box.width, 0.6 * box.height
    swollen = landmarks_68(gray, FaceBox(int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h)))
    refit = landmarks_68(gray, box_from_landmarks(swollen, gray.shape))
    assert np.abs(refit - face.points_68_2).mean() < 0.01 * box.width
    assert inter_ocular_distance(refit) == pytest.approx(face.inter_ocular_px, rel=0.02)
    # Near the frame's edge the box is clipped to the frame.
    shifted = face.points_68_2 - face.points_68_2.min(axis=0) - 10.0  # partly outside the frame
    clipped = box_from_landmarks(shifted, gray.shape)
    assert clipped.left == 0 and clipped.top == 0 and clipped.right <= gray.shape[1] and clipped.bottom <= gray.shape[0]


def test_no_face_falls_back_to_whole_frame_and_records_it():
    blank = np.full((120, 160), 128, dtype=np.uint8)
    assert detect_face(blank) is None
    face = find_face(blank)
    assert not face.detected
    assert face.box == FaceBox(0, 0, 160, 120, 0.0)
    assert face.points_68_2.shape == (68, 2)


def test_inter_ocular_distance_from_eye_centres():
    points = np.zeros((68, 2), dtype=np.float32)
    points[36:42] = (10.0, 20.0)
    points[42:48] = (40.0, 24.0)
    assert inter_ocular_distance(points) == pytest.approx(np.sqrt(30.0**2 + 4.0**2))
    with pytest.raises(ValueError, match="68, 2"):
        inter_ocular_distance(points[:10])


def test_predictor_path_argument_env_and_missing_file(tmp_path, monkeypatch):
    assert default_predictor_path().is_file()
    missing = tmp_path / "nope.dat"
    with pytest.raises(PredictorNotFoundError, match="nope.dat"):
        resolve_predictor_path(missing)
    monkeypatch.setenv(PREDICTOR_ENV_VAR, str(missing))
    with pytest.raises(PredictorNotFoundError, match=PREDICTOR_ENV_VAR.replace("$", r"\$")):
        resolve_predictor_path()
    monkeypatch.setenv(PREDICTOR_ENV_VAR, str(default_predictor_path()))
    assert resolve_predictor_path() == default_predictor_path().resolve()
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"not a model")
    with pytest.raises(PredictorNotFoundError, match="garbage.dat"):
        landmarks_68(np.zeros((50, 50), np.uint8), FaceBox(0, 0, 50, 50), predictor_path=garbage)


def test_bad_image_input_gives_clear_error():
    with pytest.raises(ValueError, match="uint8"):
        detect_face(np.zeros((40, 40), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((4, 4, 2), dtype=np.uint8))


def test_detector_is_kept_in_the_cache_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    from mertk.face import landmarks

    gray = to_gray(skimage.data.astronaut())
    monkeypatch.setenv("MERTK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(landmarks, "_DETECTOR", [])
    built = landmarks.frontal_face_detector()
    path = landmarks.detector_cache_path()
    assert path.parent == tmp_path / "cache" and path.stat().st_size > 100_000
    expected = built.run(gray, 0, 0.0)[:2]

    monkeypatch.setattr(landmarks, "_DETECTOR", [])
    loaded = landmarks.frontal_face_detector()  # from the cache file
    assert loaded is not built and loaded.run(gray, 0, 0.0)[:2] == expected
    assert detect_face(gray) is not None

    path.write_bytes(b"not a detector")
    monkeypatch.setattr(landmarks, "_DETECTOR", [])
    assert landmarks.frontal_face_detector().run(gray, 0, 0.0)[:2] == expected
    assert path.stat().st_size > 100_000  # rewritten

    (tmp_path / "blocked").write_text("a file where the cache folder would be")
    monkeypatch.setenv("MERTK_CACHE", str(tmp_path / "blocked"))
    monkeypatch.setattr(landmarks, "_DETECTOR", [])
    assert landmarks.frontal_face_detector().run(gray, 0, 0.0)[:2] == expected  # no cache, still a detector
