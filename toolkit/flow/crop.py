"""The aligned face crop every flow field of a sample is computed on.

A similarity transform (rotation, uniform scale, translation) taken from the onset frame's eye
centres puts the eyes level, `iod_fraction` of the crop width apart, at fixed positions. Every
frame of the sample is warped with that one transform, so residual head motion stays in the
images (and is removed later from the flow of a rigid region) while the facial regions keep
fixed positions and the inter-ocular distance in the crop is known exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_CROP_SIZE = 224
IOD_FRACTION = 0.36  # eye distance / crop width: leaves brows above and the chin below in the crop
EYE_ROW_FRACTION = 0.36  # eye line height / crop height


@dataclass(frozen=True)
class FaceAlignment:
    """Affine (2, 3) from frame pixels to crop pixels, and the crop's size and inter-ocular distance."""

    frame_to_crop_23: np.ndarray
    size: int

    @property
    def iod_px(self) -> float:
        return IOD_FRACTION * self.size

    def points_to_crop(self, points_n2: np.ndarray) -> np.ndarray:
        points = np.asarray(points_n2, dtype=np.float64)
        return (points @ self.frame_to_crop_23[:, :2].T + self.frame_to_crop_23[:, 2]).astype(np.float32)

    def warp(self, frame_hw: np.ndarray, frame_scale: float = 1.0, size: int | None = None) -> np.ndarray:
        """The crop of a grey frame. `frame_scale` < 1 for a frame decoded at reduced size;
        `size` for a smaller crop of the same face (e.g. for the motion curve)."""
        size = size or self.size
        matrix = self.frame_to_crop_23.copy()
        matrix[:, :2] /= frame_scale
        matrix *= size / self.size
        return cv2.warpAffine(frame_hw, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(points_68_2: np.ndarray, size: int = DEFAULT_CROP_SIZE) -> FaceAlignment:
    """The similarity transform that puts the eye centres of these landmarks at their crop positions."""
    points = np.asarray(points_68_2, dtype=np.float64)
    image_left_eye = points[36:42].mean(axis=0)  # subject's right eye
    image_right_eye = points[42:48].mean(axis=0)
    source_vec = image_right_eye - image_left_eye
    source_dist = float(np.hypot(*source_vec))
    if source_dist < 1e-6:
        raise ValueError("the two eye centres coincide: no usable landmarks")
    target_dist = IOD_FRACTION * size
    scale = target_dist / source_dist
    angle = np.arctan2(source_vec[1], source_vec[0])
    cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    source_centre = (image_left_eye + image_right_eye) / 2
    target_centre = np.array([size / 2, EYE_ROW_FRACTION * size])
    translation = target_centre - rotation @ source_centre
    return FaceAlignment(np.hstack([rotation, translation[:, None]]).astype(np.float64), size)
