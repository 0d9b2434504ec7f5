"""Decoding a sample's frames. A frame that does not decode cleanly rejects its sample.

`cv2.imread` decodes a truncated JPEG with only a warning on stderr ("Premature end of JPEG
file"): the missing rows come back grey, and such a frame would poison the sample's flow and the
run's intensity bins (whether a decoder refuses it depends on the OpenCV build and the call). A JPEG is therefore accepted only when it ends with its end-of-image marker (FF D9),
after any trailing padding; the entropy-coded data before it cannot hold that pair (an FF there
is always followed by 00 or a restart marker), so the check does not depend on the content.
"""
from __future__ import annotations

from dataclasses import dataclass
import cv2
import numpy as np

from mertk.corpora.casme2 import MerSample
from mertk.errors import InputError

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PADDING = b"\x00\xff \t\r\n"  # what writers leave after the end marker


class SampleError(InputError):
    """A sample that cannot be measured; the message names the file and why."""


def _frame_problem(sample: MerSample, number: int, problem: str) -> SampleError:
    path = sample.frame_path(number)
    return SampleError(f"{sample.sample_id}: frame {path.name} {problem} ({path.parent})")


def read_gray(sample: MerSample, number: int, half: bool = False) -> np.ndarray:
    """Decode one frame as grey, at full or half size (the decoder's DCT scaling); raises
    SampleError for a missing, unreadable or truncated frame."""
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_2 if half else cv2.IMREAD_GRAYSCALE
    try:
        path = sample.frame_file(number)
    except KeyError as error:
        raise SampleError(str(error.args[0])) from None
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        raise _frame_problem(sample, number, "is not a readable JPEG") from None
    if is_truncated_jpeg(data):
        raise _frame_problem(sample, number, "is a truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, flag) if data.size else None
    if image is None or image.size == 0:
        raise _frame_problem(sample, number, "is not a readable JPEG")
    return image


def is_truncated_jpeg(data: np.ndarray | bytes) -> bool:
    """True for JPEG bytes (starting with FF D8) that do not end with FF D9 before any padding."""
    head = bytes(data[:2])
    if head != _JPEG_START:
        return False  # not a JPEG: the decoder's verdict stands
    tail = bytes(data[-64:]).rstrip(_PADDING)  # stripping stops at the marker's D9
    if not tail:  # 64 bytes of padding: look further back
        tail = bytes(data).rstrip(_PADDING)
    return not tail.endswith(_JPEG_END)


def curve_frame_numbers(sample: MerSample, points: int) -> list[int]:
    """Up to `points` frames on disk from onset to offset, evenly spaced in time, both ends included.

    Times, not frame counts: the instants are spread evenly over onset..offset and each takes the
    frame on disk nearest to it, so a corpus at 30 fps and one at 200 fps get curves over the same
    span of the expression, and a gap in the numbering does not bunch the points."""
    available = [n for n in sample.frame_numbers if sample.onset_frame <= n <= sample.offset_frame]
    if len(available) <= points:
        return available
    numbers = np.asarray(available, dtype=np.float64)
    instants = np.linspace(numbers[0], numbers[-1], points)  # frame numbers are time x fps
    nearest = np.abs(numbers[None, :] - instants[:, None]).argmin(axis=1)
    return sorted({available[i] for i in nearest})


def frames_within(sample: MerSample, centre: int, seconds: float) -> list[int]:
    """Frames on disk within `seconds` of frame `centre` (onset..offset), at the sample's frame rate."""
    reach = seconds * sample.fps
    return [n for n in sample.frame_numbers if sample.onset_frame <= n <= sample.offset_frame and abs(n - centre) <= reach]


@dataclass
class OnsetFrames:
    """The onset frame decoded at full size (landmarks, apex flow) and at half size (the motion
    curve; and the detector, whose input is shrunk from it at a quarter of the cost)."""

    full_hw: np.ndarray
    half_hw: np.ndarray


def read_onset(sample: MerSample) -> OnsetFrames:
    return OnsetFrames(read_gray(sample, sample.onset_frame), read_gray(sample, sample.onset_frame, half=True))
