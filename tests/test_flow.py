"""Optical flow estimators, head-motion compensation, strain and the aligned crop."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from mertk.flow import FLOW_METHODS, FlowMethodError, compensate_head_motion, endpoint_error, estimate_flow, optical_strain, resize_flow
from mertk.flow.crop import IOD_FRACTION, align_face
from mertk.flow.draw import face_with_motion, flow_picture


def _face_patch() -> np.ndarray:
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(gray[60:220, 160:320])  # the face, 160 x 160, textured


def _warp(image: np.ndarray, flow_hw2: np.ndarray) -> np.ndarray:
    """The image the flow carries `image` onto (backward map, adequate for small smooth fields)."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    return cv2.remap(image, xs - flow_hw2[..., 0], ys - flow_hw2[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("method", (*FLOW_METHODS, "dis_light"))
def test_each_method_recovers_a_smooth_local_motion(method):
    image = _face_patch()
    ys, xs = np.mgrid[0:160, 0:160].astype(np.float32)
    bump = np.exp(-((xs - 80) ** 2 + (ys - 80) ** 2) / (2 * 25.0**2))
    truth = np.stack([1.2 * bump, -1.5 * bump], axis=-1).astype(np.float32)
    moved = _warp(image, truth)
    flow = estimate_flow(image, moved, method)
    assert flow.shape == (160, 160, 2) and flow.dtype == np.float32
    centre = np.zeros((160, 160), bool)
    centre[55:105, 55:105] = True
    assert endpoint_error(flow, truth, centre) < 0.5
    # the mean motion in the centre points the planted way
    mean = flow[centre].mean(axis=0)
    assert mean[0] > 0.5 and mean[1] < -0.6


def test_unknown_method_and_bad_shapes():
    image = _face_patch()
    with pytest.raises(FlowMethodError, match="unknown flow method 'lk'"):
        estimate_flow(image, image, "lk")
    with pytest.raises(ValueError, match="one size"):
        estimate_flow(image, image[:100], "dis")


def test_head_motion_compensation_removes_the_rigid_translation():
    flow = np.zeros((40, 40, 2), np.float32)
    flow[...] = (0.7, -0.3)
    flow[30:, :, 1] += 2.0  # expression motion below the rigid region
    rigid = np.zeros((40, 40), bool)
    rigid[5:15, 15:25] = True
    compensated, head = compensate_head_motion(flow, rigid)
    np.testing.assert_allclose(head, (0.7, -0.3), atol=1e-6)
    np.testing.assert_allclose(compensated[:30], 0.0, atol=1e-6)
    np.testing.assert_allclose(compensated[30:, :, 1], 2.0, atol=1e-6)
    unchanged, zero = compensate_head_motion(flow, np.zeros((40, 40), bool))
    assert np.array_equal(unchanged, flow) and not zero.any()


def test_optical_strain():
    translation = np.full((20, 20, 2), 3.0, np.float32)
    assert np.allclose(optical_strain(translation), 0.0)
    ys, xs = np.mgrid[0:20, 0:20].astype(np.float32)
    stretch = np.stack([0.1 * xs, np.zeros_like(xs)], axis=-1)  # exx = 0.1, nothing else
    assert np.allclose(optical_strain(stretch), 0.1, atol=1e-6)
    shear = np.stack([0.2 * ys, np.zeros_like(xs)], axis=-1)  # exy = 0.1 -> sqrt(2 * 0.01)
    assert np.allclose(optical_strain(shear), np.sqrt(0.02), atol=1e-6)


def test_resize_flow_scales_vectors():
    flow = np.full((40, 40, 2), (2.0, -4.0), np.float32)
    small = resize_flow(flow, 10, 20)
    assert small.shape == (10, 20, 2)
    np.testing.assert_allclose(small[..., 0], 1.0)
    np.testing.assert_allclose(small[..., 1], -1.0)


def test_alignment_puts_eyes_level_at_fixed_positions():
    points = np.zeros((68, 2), np.float32)
    points[36:42] = (100.0, 200.0)  # image-left eye
    points[42:48] = (160.0, 230.0)  # image-right eye, tilted head
    alignment = align_face(points, size=224)
    eyes = alignment.points_to_crop(np.array([[100.0, 200.0], [160.0, 230.0]]))
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3  # level
    assert abs((eyes[1, 0] - eyes[0, 0]) - IOD_FRACTION * 224) < 1e-3
    assert abs(alignment.iod_px - IOD_FRACTION * 224) < 1e-9
    frame = np.tile(np.arange(400, dtype=np.uint8), (400, 1))
    assert alignment.warp(frame).shape == (224, 224)
    assert alignment.warp(frame[::2, ::2], frame_scale=0.5, size=112).shape == (112, 112)
    with pytest.raises(ValueError, match="coincide"):
        align_face(np.zeros((68, 2)))


def test_pictures():
    u = np.zeros((28, 28), np.float32)
    v = np.zeros((28, 28), np.float32)
    v[10:14, 10:14] = -3.0
    picture = flow_picture(u, v, size=112)
    assert picture.shape == (112, 112, 3) and picture[0, 0].sum() == 0 and picture[48, 48].max() == 255
    face = face_with_motion(np.full((112, 112), 128, np.uint8), u[::2, ::2], v[::2, ::2], [("cheek", "L", 10, 10, 50, 50)], 1 / 224, [("cheek", "L")], size=224)
    assert face.shape == (224, 224, 3)
    assert tuple(face[10, 20]) == (60, 200, 60)  # the highlighted box edge


def test_the_colour_key_matches_the_flow_picture():
    from mertk.flow.draw import colour_key, direction_wheel

    wheel = direction_wheel(101)
    for du, dv, (row, col) in ((0.0, -1.0, (2, 50)), (1.0, 0.0, (50, 98)), (0.0, 1.0, (98, 50)), (-1.0, 0.0, (50, 2))):
        field = flow_picture(np.full((4, 4), du, np.float32), np.full((4, 4), dv, np.float32), full_scale=1.0)
        assert np.abs(field[0, 0].astype(int) - wheel[row, col].astype(int)).max() <= 20, (du, dv)  # near the rim: nearly full brightness
    assert tuple(wheel[50, 50]) == (0, 0, 0) and tuple(wheel[0, 0]) == (255, 255, 255)  # no motion, outside
    key = colour_key(120)
    assert (key[26:146, 56:176] == direction_wheel(120)).all() and (key[:26] < 200).any()  # the wheel and a label above it


def test_arrows_are_drawn_where_the_face_moves_and_nowhere_else():
    u = np.zeros((14, 14), np.float32)
    v = np.zeros((14, 14), np.float32)
    v[10, 7] = -0.4  # one cell moves up, weakly: drawn long enough to see
    face = face_with_motion(np.full((112, 112), 128, np.uint8), u, v, [], 1 / 224, size=280)
    changed = np.argwhere(np.abs(face.astype(int) - 128).max(axis=2) > 30)
    rows, cols = changed[:, 0], changed[:, 1]
    assert changed.size and cols.min() > 280 * 6 / 14 - 10 and cols.max() < 280 * 8 / 14 + 10
    assert rows.max() - rows.min() >= 30  # two cells long, upwards from the cell centre
