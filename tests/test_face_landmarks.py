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
