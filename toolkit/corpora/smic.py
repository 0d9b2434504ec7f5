"""SMIC-HS reader: the high-speed camera's micro-expression clips, labelled by their folders.

Layout (100 fps, no coding sheet, no AU labels, no apex):
  HS/s3/micro/negative/s3_ne_03/image000123.bmp
The corpus root is the folder holding HS/ (or HS/ itself). Each clip folder under
`<subject>/micro/<positive|negative|surprise>/` is one sample: its label is the folder's, onset
and offset are its first and last frames, the apex is left to the motion curve. `non_micro`
folders (the recordings' non-expression parts) are not samples and are skipped.

Subject and clip names appear padded and unpadded in the wild (`s3_ne_03`, `s03_ne_03`); both
read the same and the record carries the padded form (`s03`, `s03_ne_03`) that the MEGC2019
composite list uses. A clip whose name says another emotion than its folder, a clip without
frames, and a folder outside the three labels are rejected with the reason.
"""
from __future__ import annotations

import re
from pathlib import Path

from mertk.corpora.mer import (
    PROTOCOL_MEGC2019,
    CorpusLayoutError,
    CorpusListing,
    MerSample,
    RowError,
    describe_folder,
    frames_on_disk,
    protocol_labels,
    reject,
    require_folder,
)
from mertk.shards.manifest import Rejection

DATASET = "smic"
CORPUS = "SMIC-HS"
FPS = 100.0
HS_FOLDER = "HS"
MICRO_FOLDER = "micro"
NON_MICRO_FOLDER = "non_micro"
EMOTIONS = ("negative", "positive", "surprise")
# The emotion code inside clip names.
CLIP_CODES = {"ne": "negative", "po": "positive", "sur": "surprise"}
EMOTION_3CLASS = {e: e for e in EMOTIONS}  # SMIC's classes are the MEGC2019 classes
PROTOCOL_MAPS = {PROTOCOL_MEGC2019: EMOTION_3CLASS}
FRAME_PATTERN = re.compile(r"^image(\d+)\.(?:bmp|jpe?g|png)$", re.I)
_SUBJECT = re.compile(r"^s0*(\d+)$", re.I)
_CLIP = re.compile(r"^s0*(\d+)_([a-z]+)_0*(\d+)$", re.I)


def subject_name(folder: str) -> str:
    """'s3' / 's03' -> 's03'."""
    match = _SUBJECT.match(folder)
    if not match:
        raise RowError(f"subject folder {folder!r} is not s<number>")
    return f"s{int(match.group(1)):02d}"


def clip_name(folder: str) -> tuple[str, str]:
    """'s3_ne_3' / 's03_ne_03' -> ('s03_ne_03', 'negative')."""
    match = _CLIP.match(folder)
    if not match or match.group(2).lower() not in CLIP_CODES:
        raise RowError(f"clip folder {folder!r} is not s<subject>_<ne|po|sur>_<number>")
    code = match.group(2).lower()
    return f"s{int(match.group(1)):02d}_{code}_{int(match.group(3)):02d}", CLIP_CODES[code]


def find_hs_folder(root: Path) -> Path:
    """HS/ under the root, or the root itself when it holds s<N>/micro/ folders."""
    for candidate in (root / HS_FOLDER, root):
        if candidate.is_dir() and any(p.is_dir() and _SUBJECT.match(p.name) and (p / MICRO_FOLDER).is_dir() for p in candidate.iterdir()):
            return candidate
    raise CorpusLayoutError(
        f"{root}: not a SMIC-HS folder: expected {HS_FOLDER}/<subject>/{MICRO_FOLDER}/<positive|negative|surprise>/<clip>/image<frame>.bmp; "
        f"the folder {describe_folder(root)}"
    )


def _clip_sample(subject: str, folder: Path, emotion: str, hs: Path) -> MerSample:
    clip, clip_emotion = clip_name(folder.name)
    if not clip.startswith(subject + "_"):
        raise RowError(f"clip {folder.name} lies in subject folder {folder.parent.parent.parent.name}")
    if clip_emotion != emotion:
        raise RowError(f"clip {folder.name} is named {clip_emotion} but lies in the {emotion} folder")
    frames = frames_on_disk(folder, FRAME_PATTERN)
    if len(frames) < 2:
        raise RowError(f"{len(frames)} image<frame>.bmp frame(s) in {folder.relative_to(hs.parent)}; a clip needs at least 2")
    onset, offset = frames[0][0], frames[-1][0]
    return MerSample(
        dataset=DATASET,
        subject=subject,
        clip=clip,
        onset_frame=onset,
        apex_frame=None,
        offset_frame=offset,
        au_labels=(),
        au_text="",
        emotion=emotion,
        frames=frames,
        fps=FPS,
        source=str(folder.relative_to(hs.parent)),
        apex_note="SMIC gives no apex: estimated from the motion curve",
        protocol_labels=protocol_labels(emotion, PROTOCOL_MAPS),
        local_id=clip,
    )


def read_smic(root: Path | str) -> CorpusListing:
    """One sample per micro clip folder, in order of their padded names; bad clips become rejections.

    Raises CorpusLayoutError when the folder is not a SMIC-HS corpus (no HS/<subject>/micro/).
    """
    root = require_folder(root, CORPUS)
    hs = find_hs_folder(root)
    samples: list[MerSample] = []
    rejections: list[Rejection] = []
    seen: set[str] = set()
    subjects = sorted((p for p in hs.iterdir() if p.is_dir() and _SUBJECT.match(p.name)), key=lambda p: (int(_SUBJECT.match(p.name).group(1)), p.name))
    for subject_dir in subjects:
        subject = subject_name(subject_dir.name)
        micro = subject_dir / MICRO_FOLDER
        if not micro.is_dir():
            continue  # a subject without micro-expressions (only non_micro) has no samples
        for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            emotion = emotion_dir.name.lower()
            for clip_dir in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                source = str(clip_dir.relative_to(hs.parent))
                try:
                    if emotion not in EMOTIONS:
                        raise RowError(f"emotion folder {emotion_dir.name!r} is not one of {', '.join(EMOTIONS)}")
                    sample = _clip_sample(subject, clip_dir, emotion, hs)
                    if sample.sample_id in seen:
                        raise RowError(f"repeats clip {sample.sample_id} (padded and unpadded names of one clip?)")
                except RowError as error:
                    reject(rejections, f"{subject}/{clip_dir.name}", source, error, None)
                    continue
                seen.add(sample.sample_id)
                samples.append(sample)
    samples.sort(key=lambda sample: sample.sample_id)  # padded names sort as the subjects and clips do
    return CorpusListing(root=root, layout="HS", sheet=None, samples=samples, rejections=rejections, dataset=DATASET)
