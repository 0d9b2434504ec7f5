"""A deterministic CASME II corpus in the real on-disk layout, with the planted truth beside it.

What `generate_casme2(out, config)` writes under `out`:

- `CASME2_RAW_selected/subNN/EPxx_yy[f]/img{N}.jpg`: colour JPEG frames numbered from the sheet's
  onset to its offset, one folder per sample;
- `CASME2-coding-20140508.xlsx`: the coding sheet with the real columns, in this order:
  `Subject` (int), `Filename`, an empty-header column, `OnsetFrame`, `ApexFrame`, `OffsetFrame`,
  an empty-header column, `Action Units`, `Estimated Emotion` (pandas reads the empty headers as
  `Unnamed: 2` and `Unnamed: 6`), with the real quirks: `ApexFrame` is `/` for some rows,
  single-AU cells are numbers, AU strings such as `R12`, `L10+R12`, `4+7+L10`, some with spaces,
  lower-case emotions (including a few outside the 5-class protocol);
- `ground_truth.parquet`: one row per (sample, AU, side) that is labelled or planted: `sample_id`
  (`subNN/EPxx_yy`), `au` (int32), `side` ("L", "R" or null = both sides), `labelled` (the sheet
  lists it), `planted` (the frames show it), `onset_frame`, `apex_frame` (the true apex, also
  where the sheet says `/`), `offset_frame`;
- `ground_truth_flow/subNN_EPxx_yy.npz`: the planted motion at apex, float32, OpenCV convention
  (onset(y) ~ apex(y + flow(y)), x right, y down, pixels): `flow_hw2` (everything: expression +
  head), `expression_flow_hw2` (the AU motion alone), `head_translation_xy` (2,) (the global head
  translation at apex). Stored as a compressed .npz rather than .npy to keep the committed
  corpus small (the fields are zero, or constant, away from the moving regions);
- `mertk_sample.json`: the generator's parameters and counts.

How a sample is made. A "subject" is one of two real public-domain face photos (scikit-image's
astronaut, matplotlib's Grace Hopper) under a seeded transform (mirror, scale, crop position,
small in-plane rotation, lighting, a fixed fine skin texture); dlib's 68 landmarks on the neutral
rendering place the FACS regions (`mertk.au.facs`). Each planted AU moves its regions in their
FACS directions with a smooth bump (raised cosine, zero outside the region's neighbourhood),
both sides or only the labelled side; its amplitude at apex is drawn in `amplitude_px` for the
AU's main region (secondary regions scaled by the FACS table's weights). The clip follows
rise-apex-decay: p(t) = (t / apex)^1.6 before the apex, ((offset - t) / (offset - apex))^1.6
after, so the apex is the unique frame of largest facial displacement. A small smooth global
head translation (<= `head_motion_px`) and per-frame sensor noise are added. Every frame is
resampled from the original photo through one composed map, so all frames share the same
interpolation blur. Frames taller than CASME II's scale `amplitude_px` with the face
(`Casme2SampleConfig.amplitude_scale`).

Mislabels on purpose: in some rows one listed AU is not planted; in others an AU is planted
(on regions that no other planted AU touches) that the row does not list. Both are in the truth.

Same config -> same bytes (frames, sheet, parquet, npz). The xlsx and npz zip entries carry a
fixed timestamp and the workbook's document properties a fixed date.
"""
from __future__ import annotations

import io
import json
import math
import re
import zipfile
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from mertk.au.facs import AU_TABLE, SIDES, AuLabel, format_au_labels, parse_au_string, region_box
from mertk.corpora.casme2_layout import LAYOUT_FOLDERS, REQUIRED_COLUMNS, SHEET_NAMES, frame_file_name, subject_folder_name
from mertk.face.landmarks import find_face, to_gray
from mertk.sample_data.folder import INFO_NAME, SampleDataError, prepare_sample_folder

SHEET_NAME = SHEET_NAMES[0]  # the reader's names (mertk.corpora.casme2_layout), the raw layout
FRAMES_FOLDER = LAYOUT_FOLDERS["raw"]
GROUND_TRUTH_NAME = "ground_truth.parquet"
GROUND_TRUTH_FLOW_FOLDER = "ground_truth_flow"
# Real column order; None = an empty-header column (pandas: "Unnamed: 2", "Unnamed: 6").
_SUBJECT, _FILENAME, _ONSET, _APEX, _OFFSET, _ACTION_UNITS, _EMOTION = REQUIRED_COLUMNS
SHEET_COLUMNS = (_SUBJECT, _FILENAME, None, _ONSET, _APEX, _OFFSET, None, _ACTION_UNITS, _EMOTION)
GROUND_TRUTH_COLUMNS = ("sample_id", "au", "side", "labelled", "planted", "onset_frame", "apex_frame", "offset_frame")

# Real CASME II emotion counts (255 rows); proportions drive smaller corpora.
REAL_EMOTION_COUNTS = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "surprise": 28,
    "repression": 27,
    "sadness": 4,
    "fear": 2,
}
FIVE_CLASSES = ("happiness", "disgust", "surprise", "repression", "others")

# AU cells per emotion, in sheet spelling. Chosen so that no two AUs of one cell push the same
# region in opposite directions (the truth would otherwise be ambiguous).
AU_TEMPLATES = {
    "happiness": ("12", "6+12", "R12", "L12", "L10+R12", "6+R12"),
    "disgust": ("4", "4+7", "4+7+L10", "9", "4+9", "L10", "10", "4+L10"),
    "surprise": ("1+2", "1", "2", "1+2+5", "R1+R2"),
    "repression": ("14", "15", "17", "14+17", "15+17", "R14", "L15"),
    "others": ("4", "17", "L12", "14", "7", "R15", "24", "1+2", "L4"),
    "sadness": ("1+15", "4+15", "17"),
    "fear": ("20", "4+20", "1+2+20"),
}
# Spellings of the real sheet that every corpus with these emotions contains at least once.
REQUIRED_CELLS = (("happiness", "R12"), ("happiness", "L10+R12"), ("disgust", "4+7+L10"), ("surprise", "1+2"))
# AUs the generator may plant unlisted: clearly visible, one main region each.
EXTRA_AU_CANDIDATES = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_DOC_TIME = "2014-05-08T00:00:00Z"


@dataclass(frozen=True)
class Casme2SampleConfig:
    """Parameters of a generated CASME II corpus (see the module docstring)."""

    seed: int = 0
    subjects: int = 6
    samples_per_subject: int = 4
    total_samples: int | None = None  # overrides subjects x samples_per_subject, spread over subjects
    width: int = 256
    height: int = 192
    frames: int = 24  # frames per clip, onset to offset inclusive
    face_fraction: tuple[float, float] = (0.5, 0.6)  # face box height / frame height
    amplitude_px: tuple[float, float] = (1.0, 2.5)  # main-region displacement at apex (x amplitude_scale)
    bump_spread: float = 2.5  # motion bump radius / region half-size (smooth, broader than the region box)
    head_motion_px: float = 0.3
    noise_sigma: float = 0.8  # sensor noise, grey levels
    jpeg_quality: int = 80
    missing_fraction: float = 0.12  # rows listing an AU that is not planted
    extra_fraction: float = 0.12  # rows not listing a planted AU
    slash_apex_fraction: float = 0.12  # rows whose ApexFrame is '/'

    def __post_init__(self) -> None:
        if self.subjects < 1 or self.samples_per_subject < 1:
            raise SampleDataError("subjects and samples per subject must be at least 1")
        if self.total_samples is not None and self.total_samples < self.subjects:
            raise SampleDataError(f"total samples ({self.total_samples}) must be at least the number of subjects ({self.subjects})")
        if self.subjects > 99:
            raise SampleDataError("at most 99 subjects (folders sub01..sub99)")
        if self.frames < 8:
            raise SampleDataError(f"clips need at least 8 frames, got {self.frames}")
        if self.width < 96 or self.height < 96:
            raise SampleDataError(f"frames must be at least 96x96 for dlib to find the face, got {self.width}x{self.height}")
        if not 1 <= self.jpeg_quality <= 100:
            raise SampleDataError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def sample_count(self) -> int:
        return self.total_samples if self.total_samples is not None else self.subjects * self.samples_per_subject

    @property
    def amplitude_scale(self) -> float:
        """Factor on `amplitude_px`: frames taller than CASME II's (480 rows; SAMM's are 1088) move
        their face by the same fraction of its size as a CASME II face moves, since the face fills
        the same fraction of the frame height and a facial movement is a fraction of the face, not
        a number of camera pixels. Frames up to 480 rows keep `amplitude_px` as it is."""
        return max(1.0, self.height / CASME2_HEIGHT)


# The real corpus' frame height: amplitude_px is a displacement on a face of this frame's size.
CASME2_HEIGHT = 480

SCALES: dict[str, Casme2SampleConfig] = {
    # The committed demo corpus: small, every 5-class emotion present, enough per class for LOSO.
    "default": Casme2SampleConfig(),
    # CASME II size: 26 subjects, 255 samples, 640x480, ~60 frames each.
    "casme2": Casme2SampleConfig(subjects=26, total_samples=255, width=640, height=CASME2_HEIGHT, frames=60, jpeg_quality=90),
}


# --- plan: everything that is decided before a pixel is drawn ---------------------------------


@dataclass(frozen=True)
class PlantedAu:
    au: int
    side: str | None
    amplitude_px: float


@dataclass(frozen=True)
class SubjectLook:
    """How a subject is rendered from a base photo."""

    photo: str
    mirror: bool
    face_fraction: float
    rotation_deg: float
    centre_shift_xy: tuple[float, float]  # fraction of width / height
    gain: float
    gamma: float
    offset: float
    tint_rgb: tuple[float, float, float]
    texture_seed: int


@dataclass(frozen=True)
class SamplePlan:
    subject: int
    episode: str
    onset_frame: int
    apex_frame: int  # true apex
    offset_frame: int
    apex_in_sheet: bool
    emotion: str
    au_cell: str | int
    labelled: tuple[AuLabel, ...]
    planted: tuple[PlantedAu, ...]
    head_xy: tuple[float, float, float, float]  # two smooth components: (ax, ay) amplitude, (bx, by)
    noise_seed: int
    # Other corpora's sheets: groups of alternative codes the row lists (each option one label;
    # all are in `labelled`), and what the sheet writes where it is not the true apex / offset.
    alternatives: tuple[tuple[AuLabel, ...], ...] = ()
    sheet_apex: int | str | None = None
    sheet_offset: int | str | None = None

    @property
    def subject_folder(self) -> str:
        return subject_folder_name(self.subject)

    @property
    def sample_id(self) -> str:
        return f"{self.subject_folder}/{self.episode}"


def emotion_counts(total: int) -> dict[str, int]:
    """Emotions for `total` samples: the real counts at 255, else real proportions (largest
    remainder) with at least 3 per 5-class emotion where possible and one emotion outside the
    5-class protocol from 20 samples on."""
    if total == sum(REAL_EMOTION_COUNTS.values()):
        return dict(REAL_EMOTION_COUNTS)
    real_total = sum(REAL_EMOTION_COUNTS.values())
    shares = {e: total * c / real_total for e, c in REAL_EMOTION_COUNTS.items()}
    counts = {e: int(math.floor(s)) for e, s in shares.items()}
    for emotion in sorted(shares, key=lambda e: (counts[e] - shares[e], e))[: total - sum(counts.values())]:
        counts[emotion] += 1
    minimum = 3 if total >= 3 * len(FIVE_CLASSES) + 3 else 1
    for emotion in FIVE_CLASSES:
        while counts[emotion] < minimum and total >= len(FIVE_CLASSES):
            donor = max(counts, key=lambda e: (counts[e], e))
            counts[donor] -= 1
            counts[emotion] += 1
    if total >= 20 and counts["sadness"] + counts["fear"] == 0:
        counts["others"] -= 1
        counts["sadness"] += 1
    return {e: c for e, c in counts.items() if c > 0}


def _samples_per_subject(config: Casme2SampleConfig, rng: np.random.Generator) -> list[int]:
    if config.total_samples is None:
        return [config.samples_per_subject] * config.subjects
    base, extra = divmod(config.total_samples, config.subjects)
    counts = [base] * config.subjects
    for index in rng.permutation(config.subjects)[:extra]:
        counts[index] += 1
    return counts


def _assign_emotions(per_subject: list[int], rng: np.random.Generator) -> list[list[str]]:
    """Shuffle the emotions over subjects so that each 5-class emotion spans >= 2 subjects."""
    pool = [e for e, c in emotion_counts(sum(per_subject)).items() for _ in range(c)]
    for _ in range(200):
        order = [pool[i] for i in rng.permutation(len(pool))]
        split, start = [], 0
        for count in per_subject:
            split.append(order[start : start + count])
            start += count
        spans = {e: sum(e in s for s in split) for e in FIVE_CLASSES}
        if len(per_subject) < 2 or all(spans[e] >= 2 for e in FIVE_CLASSES if pool.count(e) >= 2):
            return split
    return split


def _regions_of(au: int) -> set[str]:
    return {motion.region for motion in AU_TABLE[au].motions} if au in AU_TABLE else set()


def _sheet_spelling(labels: list[AuLabel], rng: np.random.Generator) -> str | int:
    """The 'Action Units' cell: a number for one plain AU, sometimes spaces around '+'."""
    text = format_au_labels(labels)
    if len(labels) == 1 and labels[0].side is None:
        return labels[0].au
    if len(labels) > 1 and rng.random() < 0.25:
        return text.replace("+", " + ") if rng.random() < 0.5 else text + " "
    return text


def subject_look(index: int, config: Casme2SampleConfig, rng: np.random.Generator) -> SubjectLook:
    """The seeded look of the `index`-th subject (draws from `rng` in a fixed order)."""
    return SubjectLook(
        photo=("astronaut", "grace_hopper")[(index + config.seed) % 2],
        mirror=bool((index // 2) % 2),
        face_fraction=float(rng.uniform(*config.face_fraction)),
        rotation_deg=float(rng.uniform(-4.0, 4.0)),
        centre_shift_xy=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.04, 0.04))),
        gain=float(rng.uniform(0.85, 1.12)),
        gamma=float(rng.uniform(0.85, 1.15)),
        offset=float(rng.uniform(-8.0, 8.0)),
        tint_rgb=tuple(float(v) for v in rng.uniform(0.94, 1.06, 3)),
        texture_seed=int(rng.integers(2**31)),
    )


def plant_mislabels(samples: list[SamplePlan], config: Casme2SampleConfig, rng: np.random.Generator) -> tuple[list[SamplePlan], list[int]]:
    """Mislabel rows on purpose: drop one planted AU from some rows (the sheet lists an AU the
    frames do not show) and plant an unlisted AU, on regions no other planted AU touches, in
    others. Returns the rows and the random row order it drew (callers pick further rows from it)."""
    samples = list(samples)
    count = len(samples)
    order = [int(i) for i in rng.permutation(count)]
    n_missing = max(1, round(config.missing_fraction * count)) if config.missing_fraction > 0 else 0
    n_extra = max(1, round(config.extra_fraction * count)) if config.extra_fraction > 0 else 0
    # Missing: prefer rows with several AUs (the row still shows motion).
    multi_first = sorted(order, key=lambda i: -min(len(samples[i].planted), 2))
    missing = multi_first[:n_missing]
    extra = [i for i in order if i not in missing][:n_extra]
    for index in missing:
        plan = samples[index]
        drop = int(rng.integers(len(plan.planted)))
        samples[index] = replace(plan, planted=tuple(p for k, p in enumerate(plan.planted) if k != drop))
    for index in extra:
        plan = samples[index]
        used = set().union(*(_regions_of(a.au) for a in plan.labelled), *(_regions_of(p.au) for p in plan.planted))
        listed = {label.au for label in plan.labelled}
        candidates = [au for au in EXTRA_AU_CANDIDATES if au not in listed and not (_regions_of(au) & used)]
        if not candidates:
            continue
        au = candidates[int(rng.integers(len(candidates)))]
        side = (None, "L", "R")[int(rng.integers(3))]
        planted_au = PlantedAu(au, side, config.amplitude_scale * float(rng.uniform(*config.amplitude_px)))
        samples[index] = replace(plan, planted=plan.planted + (planted_au,))
    return samples, order


def plan_corpus(config: Casme2SampleConfig) -> tuple[list[SubjectLook], list[SamplePlan]]:
    """Decide every subject look and sample (labels, planted AUs, timing); deterministic in the seed."""
    rng = np.random.default_rng([config.seed, 0xCA5E2])
    per_subject = _samples_per_subject(config, rng)
    emotions = _assign_emotions(per_subject, rng)

    looks = [subject_look(index, config, rng) for index in range(config.subjects)]

    samples: list[SamplePlan] = []
    used_cells: set[str] = set()
    for subject_index, subject_emotions in enumerate(emotions):
        episodes: set[str] = set()
        for emotion in subject_emotions:
            while True:
                episode = f"EP{int(rng.integers(1, 21)):02d}_{int(rng.integers(1, 7)):02d}{'f' if rng.random() < 0.5 else ''}"
                if episode.rstrip("f") not in {e.rstrip("f") for e in episodes}:
                    episodes.add(episode)
                    break
            template = AU_TEMPLATES[emotion][int(rng.integers(len(AU_TEMPLATES[emotion])))]
            pending = [cell for e, cell in REQUIRED_CELLS if e == emotion and cell not in used_cells]
            if pending:  # the real sheet's spellings, guaranteed once each
                template = pending[0]
            used_cells.add(template)
            labels = parse_au_string(template)
            onset = int(rng.integers(1, 300))
            apex_index = int(round(rng.uniform(0.3, 0.55) * (config.frames - 1)))
            planted = [PlantedAu(l.au, l.side, config.amplitude_scale * float(rng.uniform(*config.amplitude_px))) for l in labels]
            samples.append(
                SamplePlan(
                    subject=subject_index + 1,
                    episode=episode,
                    onset_frame=onset,
                    apex_frame=onset + apex_index,
                    offset_frame=onset + config.frames - 1,
                    apex_in_sheet=True,
                    emotion=emotion,
                    au_cell=_sheet_spelling(labels, rng),
                    labelled=tuple(labels),
                    planted=tuple(planted),
                    head_xy=tuple(float(v) for v in rng.uniform(-1.0, 1.0, 4)),
                    noise_seed=int(rng.integers(2**31)),
                )
            )
        # sheet order within a subject: by episode name, as in the real file
    samples.sort(key=lambda s: (s.subject, s.episode))
    if not any(isinstance(p.au_cell, str) and " " in p.au_cell for p in samples):
        for index, plan in enumerate(samples):
            if len(plan.labelled) > 1:  # at least one cell with spaces, as in the real sheet
                samples[index] = replace(plan, au_cell=format_au_labels(plan.labelled).replace("+", " + "))
                break

    samples, order = plant_mislabels(samples, config, rng)
    n_slash = max(1, round(config.slash_apex_fraction * len(samples))) if config.slash_apex_fraction > 0 else 0
    for index in order[:n_slash]:
        samples[index] = replace(samples[index], apex_in_sheet=False)
    return looks, samples


# --- pixels -----------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def base_photo(name: str) -> np.ndarray:
    """A real public-domain face photo shipped with an installed package, RGB float32 (H, W, 3)."""
    if name == "astronaut":
        import skimage.data

        rgb = skimage.data.astronaut()
    elif name == "grace_hopper":
        import matplotlib
        from skimage.io import imread

        rgb = imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    else:
        raise SampleDataError(f"unknown base photo {name!r}")
    return np.ascontiguousarray(rgb[..., :3]).astype(np.float32)


@lru_cache(maxsize=2)
def _base_face(name: str) -> tuple[np.ndarray, float]:
    """(centre_xy of the 68 landmarks, face height in px) on the base photo."""
    face = find_face(to_gray(base_photo(name).astype(np.uint8)))
    if not face.detected:
        raise SampleDataError(f"dlib found no face on the base photo {name}")
    points = face.points_68_2
    centre = points.mean(axis=0)
    height = float(points[:, 1].max() - min(points[17:27, 1].min(), points[:, 1].min()))
    return centre.astype(np.float64), height


@dataclass
class SubjectCanvas:
    """A subject ready to render frames: the lit, textured photo and the frame -> photo affine map."""

    look: SubjectLook
    photo_rgb: np.ndarray  # float32 (H0, W0, 3), lighting and texture applied
    frame_to_photo_23: np.ndarray  # affine: photo_xy = M @ (frame_x, frame_y, 1)
    width: int
    height: int
    neutral_rgb: np.ndarray = field(repr=False, default=None)  # uint8 (H, W, 3) before noise
    points_68_2: np.ndarray = field(repr=False, default=None)
    face_detected: bool = False

    _base_maps: tuple[np.ndarray, np.ndarray] | None = field(repr=False, default=None)

    def render(self, displacement_hw2: np.ndarray | None) -> np.ndarray:
        """Frame whose content at x comes from the neutral subject at x - displacement(x); float32 RGB."""
        import cv2

        m = self.frame_to_photo_23.astype(np.float32)
        if self._base_maps is None:
            ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
            self._base_maps = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2])
        map_x, map_y = self._base_maps
        if displacement_hw2 is not None:
            dx, dy = displacement_hw2[..., 0], displacement_hw2[..., 1]
            map_x = map_x - (m[0, 0] * dx + m[0, 1] * dy)
            map_y = map_y - (m[1, 0] * dx + m[1, 1] * dy)
        return cv2.remap(self.photo_rgb, map_x, map_y, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _skin_texture(shape_hw: tuple[int, int], seed: int, scale_px: float) -> np.ndarray:
    """Fine band-pass texture (grey levels, about +-3) fixed on the photo, so it moves with the face."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape_hw).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), max(scale_px, 0.5))
    coarse = cv2.GaussianBlur(noise, (0, 0), max(scale_px, 0.5) * 4)
    band = fine - coarse
    return band * (3.0 / (band.std() + 1e-6))


def build_subject(look: SubjectLook, width: int, height: int) -> SubjectCanvas:
    """Render the neutral subject and find its face; raises SampleDataError when dlib cannot."""
    import cv2

    photo = base_photo(look.photo)
    photo_h, photo_w = photo.shape[:2]
    centre, face_height = _base_face(look.photo)
    scale = look.face_fraction * height / face_height  # frame px per photo px
    # Texture grain ~1 frame pixel, expressed in photo pixels.
    texture = _skin_texture((photo_h, photo_w), look.texture_seed, scale_px=0.8 / scale)
    lit = 255.0 * np.power(np.clip(photo / 255.0, 0, 1), look.gamma)
    lit = lit * look.gain * np.asarray(look.tint_rgb, np.float32) + look.offset + texture[..., None]
    # Anti-alias before downsampling; no-op when the photo is enlarged.
    if scale < 1.0:
        lit = cv2.GaussianBlur(lit, (0, 0), 0.45 / scale)
    lit = np.clip(lit, 0, 255).astype(np.float32)
    if look.mirror:
        lit = np.ascontiguousarray(lit[:, ::-1])
        centre = np.array([photo_w - 1 - centre[0], centre[1]])

    angle = math.radians(look.rotation_deg)
    cos_a, sin_a = math.cos(angle) / scale, math.sin(angle) / scale
    target = np.array([width * (0.5 + look.centre_shift_xy[0]), height * (0.5 + look.centre_shift_xy[1])])
    # photo = centre + R(angle) / scale @ (frame - target)
    linear = np.array([[cos_a, -sin_a], [sin_a, cos_a]])
    matrix = np.zeros((2, 3))
    matrix[:, :2] = linear
    matrix[:, 2] = centre - linear @ target
    canvas = SubjectCanvas(look, lit, matrix, width, height)
    neutral = np.clip(canvas.render(None) + 0.5, 0, 255).astype(np.uint8)
    face = find_face(to_gray(neutral))
    canvas.neutral_rgb = neutral
    canvas.points_68_2 = face.points_68_2
    canvas.face_detected = face.detected
    return canvas


def temporal_profile(frames: int, apex_index: int) -> np.ndarray:
    """p(t) in [0, 1]: 0 at onset and offset, 1 only at the apex; sharp peak, smooth start."""
    t = np.arange(frames, dtype=np.float64)
    rise = np.clip(t / max(apex_index, 1), 0, 1) ** 1.6
    decay = np.clip((frames - 1 - t) / max(frames - 1 - apex_index, 1), 0, 1) ** 1.6
    profile = np.where(t <= apex_index, rise, decay)
    profile[0] = 0.0
    profile[apex_index] = 1.0
    return profile


def _bump(shape_hw: tuple[int, int], box, spread: float = 1.5) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Raised-cosine weight in [0, 1], 1 at the box centre, 0 beyond `spread` x the half-size; with its window."""
    height, width = shape_hw
    cx, cy = box.centre_xy
    rx = max((box.x1 - box.x0) / 2 * spread, 1.0)
    ry = max((box.y1 - box.y0) / 2 * spread, 1.0)
    x0, x1 = max(int(math.floor(cx - rx)), 0), min(int(math.ceil(cx + rx)) + 1, width)
    y0, y1 = max(int(math.floor(cy - ry)), 0), min(int(math.ceil(cy + ry)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((0, 0), np.float32), (slice(0, 0), slice(0, 0))
    xs = (np.arange(x0, x1) + 0.5 - cx) / rx
    ys = (np.arange(y0, y1) + 0.5 - cy) / ry
    r = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    weight = np.where(r < 1.0, np.cos(np.pi / 2 * r) ** 2, 0.0).astype(np.float32)
    return weight, (slice(y0, y1), slice(x0, x1))


def expression_field_hw2(
    points_68_2: np.ndarray, planted: tuple[PlantedAu, ...], shape_hw: tuple[int, int], spread: float = 2.5
) -> np.ndarray:
    """Apex displacement (H, W, 2) of the planted AUs: each AU region bumps in its FACS direction."""
    field_hw2 = np.zeros(shape_hw + (2,), np.float32)
    for planted_au in planted:
        spec = AU_TABLE.get(planted_au.au)
        if spec is None:
            continue
        sides = SIDES if planted_au.side is None else (planted_au.side,)
        for motion in spec.motions:
            for side in sides:
                weight, window = _bump(shape_hw, region_box(points_68_2, motion.region, side), spread)
                dx, dy = motion.direction_xy(side)
                amplitude = planted_au.amplitude_px * motion.weight
                field_hw2[window + (0,)] += weight * (amplitude * dx)
                field_hw2[window + (1,)] += weight * (amplitude * dy)
    return field_hw2


def head_translation(plan: SamplePlan, frames: int, max_px: float) -> np.ndarray:
    """(frames, 2) smooth global head translation, 0 at onset, |.| <= max_px."""
    t = np.arange(frames) / max(frames - 1, 1)
    ax, ay, bx, by = plan.head_xy
    path = np.stack([ax * np.sin(np.pi * t) + bx * np.sin(2 * np.pi * t) / 2, ay * np.sin(np.pi * t) + by * np.sin(2 * np.pi * t) / 2], axis=1)
    peak = np.abs(path).max() if np.abs(path).max() > 0 else 1.0
    return (path / peak * max_px * 0.999 / math.sqrt(2)).astype(np.float32)


def forward_flow_hw2(backward_hw2: np.ndarray, iterations: int = 8) -> np.ndarray:
    """OpenCV-convention flow F(y) = D(y + F(y)) of a backward-warp displacement D (frame(x) = onset(x - D(x)))."""
    import cv2

    height, width = backward_hw2.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = backward_hw2.copy()
    for _ in range(iterations):
        flow = cv2.remap(backward_hw2, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return flow


def jpeg_bytes(rgb_uint8: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb_uint8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SampleDataError("JPEG encoding failed")
    return encoded.tobytes()


def render_sample(canvas: SubjectCanvas, plan: SamplePlan, config: Casme2SampleConfig) -> tuple[list[bytes], dict[str, np.ndarray]]:
    """JPEG bytes of every frame (onset..offset) and the apex truth fields."""
    frames, truth = render_frames(canvas, plan, config)
    return [jpeg_bytes(rgb, config.jpeg_quality) for rgb in frames], truth


def render_frames(canvas: SubjectCanvas, plan: SamplePlan, config: Casme2SampleConfig) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Every frame (onset..offset) as uint8 RGB (H, W, 3), and the apex truth fields."""
    frames = plan.offset_frame - plan.onset_frame + 1
    apex_index = plan.apex_frame - plan.onset_frame
    shape_hw = (config.height, config.width)
    expression = expression_field_hw2(canvas.points_68_2, plan.planted, shape_hw, config.bump_spread)
    profile = temporal_profile(frames, apex_index)
    head = head_translation(plan, frames, config.head_motion_px)
    rng = np.random.default_rng(plan.noise_seed)
    rendered = []
    for index in range(frames):
        displacement = expression * np.float32(profile[index]) + head[index]
        rgb = canvas.render(displacement)
        # Luminance sensor noise, independent per frame and pixel.
        rgb += rng.standard_normal(shape_hw + (1,), dtype=np.float32) * np.float32(config.noise_sigma) + np.float32(0.5)
        rendered.append(np.clip(rgb, 0, 255).astype(np.uint8))
    apex_head = head[apex_index]
    truth = {
        "flow_hw2": forward_flow_hw2(expression + apex_head),
        "expression_flow_hw2": forward_flow_hw2(expression),
        "head_translation_xy": apex_head.astype(np.float32),
    }
    return rendered, truth


# --- files ------------------------------------------------------------------------------------


def _deterministic_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compresslevel=6)
    return buffer.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz (np.load reads it) with fixed zip timestamps, so equal arrays give equal bytes."""
    entries = []
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
        entries.append((f"{name}.npy", buffer.getvalue()))
    return _deterministic_zip(entries)


def sheet_rows(samples: list[SamplePlan]) -> list[list[object]]:
    """Cell values of the coding sheet, header excluded, in SHEET_COLUMNS order."""
    rows = []
    for plan in samples:
        rows.append(
            [
                plan.subject,
                plan.episode,
                None,
                plan.onset_frame,
                plan.apex_frame if plan.apex_in_sheet else "/",
                plan.offset_frame,
                None,
                plan.au_cell,
                plan.emotion,
            ]
        )
    return rows


def xlsx_bytes(samples: list[SamplePlan]) -> bytes:
    """The coding sheet as .xlsx bytes, reproducible (fixed document dates and zip timestamps)."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append([name for name in SHEET_COLUMNS])
    for row in sheet_rows(samples):
        sheet.append(row)
    return workbook_bytes(workbook)


def workbook_bytes(workbook, document_time: str = _FIXED_DOC_TIME) -> bytes:
    """An openpyxl workbook as .xlsx bytes that depend only on its content (fixed document dates
    and zip timestamps)."""
    buffer = io.BytesIO()
    workbook.save(buffer)
    entries = []
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        for info in archive.infolist():
            data = archive.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)", rf"\g<1>{document_time}\g<3>", text)
                data = text.encode("utf-8")
            entries.append((info.filename, data))
    return _deterministic_zip(entries)


def ground_truth_table(samples: list[SamplePlan], sample_id: Callable[[SamplePlan], str] | None = None):
    """One row per (sample, AU, side) that is labelled or planted, in sheet order; `sample_id`
    names a sample (default: the CASME II id, subNN/EPxx_yy)."""
    import pyarrow as pa

    rows = []
    for plan in samples:
        keys: list[tuple[int, str | None]] = []
        for label in plan.labelled:
            if (label.au, label.side) not in keys:
                keys.append((label.au, label.side))
        for planted in plan.planted:
            if (planted.au, planted.side) not in keys:
                keys.append((planted.au, planted.side))
        labelled = {(label.au, label.side) for label in plan.labelled}
        planted = {(p.au, p.side) for p in plan.planted}
        for au, side in keys:
            rows.append(
                {
                    "sample_id": sample_id(plan) if sample_id else plan.sample_id,
                    "au": au,
                    "side": side,
                    "labelled": (au, side) in labelled,
                    "planted": (au, side) in planted,
                    "onset_frame": plan.onset_frame,
                    "apex_frame": plan.apex_frame,
                    "offset_frame": plan.offset_frame,
                }
            )
    schema = pa.schema(
        [
            ("sample_id", pa.string()),
            ("au", pa.int32()),
            ("side", pa.string()),
            ("labelled", pa.bool_()),
            ("planted", pa.bool_()),
            ("onset_frame", pa.int32()),
            ("apex_frame", pa.int32()),
            ("offset_frame", pa.int32()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


@dataclass
class Casme2SampleSummary:
    out_dir: Path
    subjects: int
    samples: int
    frames: int
    faces_detected: int
    inter_ocular_px: dict[str, float]
    bytes_written: int
    emotions: dict[str, int]
    missing_labels: int  # rows listing an AU that is not planted
    unlisted_planted: int  # rows planting an AU they do not list
    slash_apex: int


def write_file(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def subject_canvas(subject: int, look: SubjectLook, config: Casme2SampleConfig) -> SubjectCanvas:
    """The subject's canvas; retries deterministically with a milder look if dlib finds no face."""
    canvas = build_subject(look, config.width, config.height)
    attempt = 0
    while not canvas.face_detected and attempt < 5:
        attempt += 1
        look = replace(look, rotation_deg=look.rotation_deg / 2, centre_shift_xy=(0.0, 0.0), face_fraction=0.55)
        canvas = build_subject(look, config.width, config.height)
    if not canvas.face_detected:
        raise SampleDataError(f"dlib finds no face on generated subject {subject_folder_name(subject)} at {config.width}x{config.height}; use larger frames")
    return canvas


@dataclass
class _SubjectResult:
    subject: int
    look: SubjectLook
    inter_ocular_px: float
    frames: int
    bytes_written: int


def _write_subject(subject: int, look: SubjectLook, plans: list[SamplePlan], config: Casme2SampleConfig, out_dir: Path) -> _SubjectResult:
    """Render and write every sample of one subject (one unit of work; runs in a worker process)."""
    canvas = subject_canvas(subject, look, config)
    total_bytes = total_frames = 0
    for plan in plans:
        jpegs, truth = render_sample(canvas, plan, config)
        folder = out_dir / FRAMES_FOLDER / plan.subject_folder / plan.episode
        for offset, data in enumerate(jpegs):
            total_bytes += write_file(folder / frame_file_name(plan.onset_frame + offset), data)
        total_frames += len(jpegs)
        flow_name = plan.sample_id.replace("/", "_") + ".npz"
        total_bytes += write_file(out_dir / GROUND_TRUTH_FLOW_FOLDER / flow_name, npz_bytes(truth))
    return _SubjectResult(subject, canvas.look, round(_iod(canvas.points_68_2), 2), total_frames, total_bytes)


def generate_casme2(
    out_dir: Path | str,
    config: Casme2SampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    plan: tuple[list[SubjectLook], list[SamplePlan]] | None = None,
) -> Casme2SampleSummary:
    """Write the corpus under `out_dir` (see the module docstring).

    `progress(n)` is told of finished samples; `workers` > 1 renders subjects in parallel
    processes (the bytes do not depend on it); `plan` replaces `plan_corpus(config)` (the MEGC2019
    sample renames clips after the composite list).
    """
    from concurrent.futures import as_completed

    from mertk.execution.pools import process_pool

    out_dir = Path(out_dir)
    looks, samples = plan if plan is not None else plan_corpus(config)
    prepare_out_dir(out_dir)
    jobs = [(index + 1, look, [p for p in samples if p.subject == index + 1]) for index, look in enumerate(looks)]
    results: dict[int, _SubjectResult] = {}
    if workers <= 1:
        for subject, look, plans in jobs:
            results[subject] = _write_subject(subject, look, plans, config, out_dir)
            if progress is not None:
                progress(len(plans))
    else:
        with process_pool(workers) as pool:
            futures = {pool.submit(_write_subject, subject, look, plans, config, out_dir): len(plans) for subject, look, plans in jobs}
            for future in as_completed(futures):
                result = future.result()
                results[result.subject] = result
                if progress is not None:
                    progress(futures[future])
    total_bytes = sum(r.bytes_written for r in results.values())
    total_frames = sum(r.frames for r in results.values())
    final_looks = {subject: results[subject].look for subject in sorted(results)}
    inter_ocular = {subject_folder_name(subject): results[subject].inter_ocular_px for subject in sorted(results)}

    total_bytes += write_file(out_dir / SHEET_NAME, xlsx_bytes(samples))
    total_bytes += write_file(out_dir / GROUND_TRUTH_NAME, parquet_bytes(ground_truth_table(samples)))
    emotions: dict[str, int] = {}
    for plan in samples:
        emotions[plan.emotion] = emotions.get(plan.emotion, 0) + 1
    summary = Casme2SampleSummary(
        out_dir=out_dir,
        subjects=len(results),
        samples=len(samples),
        frames=total_frames,
        faces_detected=len(results),
        inter_ocular_px=inter_ocular,
        bytes_written=0,
        emotions=dict(sorted(emotions.items())),
        missing_labels=sum(any((l.au, l.side) not in {(p.au, p.side) for p in s.planted} for l in s.labelled) for s in samples),
        unlisted_planted=sum(any((p.au, p.side) not in {(l.au, l.side) for l in s.labelled} for p in s.planted) for s in samples),
        slash_apex=sum(not s.apex_in_sheet for s in samples),
    )
    info = {
        "generator": "mertk sample-data casme2",
        "config": asdict(config),
        "subjects": {subject_folder_name(k): asdict(look) for k, look in final_looks.items()},
        "inter_ocular_px": summary.inter_ocular_px,
        "samples": summary.samples,
        "frames": summary.frames,
        "emotions": summary.emotions,
        "missing_labels": summary.missing_labels,
        "unlisted_planted": summary.unlisted_planted,
        "slash_apex": summary.slash_apex,
        "ground_truth_flow": "npz per sample: flow_hw2, expression_flow_hw2 (float32 H,W,2, OpenCV forward convention onset->apex), head_translation_xy (2,)",
    }
    total_bytes += write_file(out_dir / INFO_NAME, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    summary.bytes_written = total_bytes
    return summary


def prepare_out_dir(out_dir: Path) -> None:
    """Create `out_dir`; a previous generated corpus there is replaced, any other content is refused."""
    prepare_sample_folder(out_dir, (FRAMES_FOLDER, GROUND_TRUTH_FLOW_FOLDER, SHEET_NAME, GROUND_TRUTH_NAME), "CASME II")


def _iod(points_68_2: np.ndarray) -> float:
    from mertk.face.landmarks import inter_ocular_distance

    return inter_ocular_distance(points_68_2)
