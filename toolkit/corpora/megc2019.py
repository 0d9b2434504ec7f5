"""The MEGC2019 composite protocol: CASME II + SAMM + SMIC-HS, 3 classes, selected by the organisers' list.

The list (`combined_3class_gt.csv`, shipped in `mertk/corpora/data/`, its source named in
SOURCE.md there) names 442 samples as (dataset, subject, clip, label 0 negative / 1 positive /
2 surprise). `select_composite` picks exactly those samples from what the readers found, with
the list's label, and reports every listed sample the user's folders lack; samples outside the
list are not part of the protocol. Names are matched after the corpora's own spellings are
normalised: subject numbers without padding (`sub01`, `s01`, `006` -> 1, 1, 6) and SMIC clips
with padded numbers (`s3_ne_3` -> `s03_ne_03`).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Sequence

from mertk.corpora.mer import MEGC2019_CLASSES, MerSample

LIST_NAME = "combined_3class_gt.csv"
DATASETS = ("casme2", "samm", "smic")
PROTOCOL = "megc2019"


@dataclass(frozen=True)
class CompositeEntry:
    """One row of the organisers' list."""

    dataset: str
    subject: str
    clip: str
    label: str  # negative / positive / surprise
    line: int

    @property
    def key(self) -> tuple[str, int, str]:
        return composite_key(self.dataset, self.subject, self.clip)


@dataclass
class CompositeSelection:
    """The protocol's samples with the list's labels, and what the list has that the folders lack."""

    samples: list[MerSample]
    labels: list[str]  # one per sample, from the list
    missing: list[CompositeEntry]
    label_disagreements: list[tuple[MerSample, str]]  # (sample, list label) where the reader's 3-class label differs

    @property
    def subjects(self) -> int:
        return len({(s.dataset, _subject_number(s.subject)) for s in self.samples})

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sample in self.samples:
            counts[sample.dataset] = counts.get(sample.dataset, 0) + 1
        return counts


def _subject_number(subject: str) -> int:
    digits = re.findall(r"\d+", subject)
    return int(digits[-1]) if digits else -1


def _clip_name(dataset: str, clip: str) -> str:
    if dataset == "smic":
        match = re.fullmatch(r"s0*(\d+)_([a-z]+)_0*(\d+)", clip, re.I)
        if match:
            return f"s{int(match.group(1)):02d}_{match.group(2).lower()}_{int(match.group(3)):02d}"
    return clip


def composite_key(dataset: str, subject: str, clip: str) -> tuple[str, int, str]:
    """(dataset, subject number, clip) with each corpus' padding normalised."""
    dataset = dataset.strip().lower()
    return dataset, _subject_number(subject.strip()), _clip_name(dataset, clip.strip())


def sample_key(sample: MerSample) -> tuple[str, int, str]:
    return composite_key(sample.dataset, sample.subject, sample.clip)


def load_composite_list(text: str | None = None) -> list[CompositeEntry]:
    """The organisers' list (the shipped file unless `text` is given), in file order."""
    if text is None:
        text = resources.files("mertk.corpora").joinpath("data", LIST_NAME).read_text(encoding="utf-8")
    entries = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != 4 or row[3].strip() not in ("0", "1", "2"):
            raise ValueError(f"{LIST_NAME} line {line}: expected dataset,subject,clip,label(0/1/2), got {','.join(row)!r}")
        dataset, subject, clip, label = (cell.strip() for cell in row)
        entries.append(CompositeEntry(dataset.lower(), subject, clip, MEGC2019_CLASSES[int(label)], line))
    return entries


def select_composite(samples: Iterable[MerSample], entries: Sequence[CompositeEntry] | None = None) -> CompositeSelection:
    """The composite's samples in list order, each with the list's label; listed samples not found are `missing`."""
    entries = load_composite_list() if entries is None else entries
    by_key: dict[tuple[str, int, str], MerSample] = {}
    for sample in samples:
        if sample.dataset in DATASETS:
            by_key.setdefault(sample_key(sample), sample)
    selected, labels, missing, disagreements = [], [], [], []
    for entry in entries:
        sample = by_key.get(entry.key)
        if sample is None:
            missing.append(entry)
            continue
        selected.append(sample)
        labels.append(entry.label)
        if sample.emotion_3class != entry.label:
            disagreements.append((sample, entry.label))
    return CompositeSelection(selected, labels, missing, disagreements)


def missing_summary(selection: CompositeSelection, limit: int = 5) -> str:
    """'12 listed samples missing (casme2 3, samm 9): casme2 sub01/EP02_01f, ...' or ''."""
    if not selection.missing:
        return ""
    per: dict[str, int] = {}
    for entry in selection.missing:
        per[entry.dataset] = per.get(entry.dataset, 0) + 1
    shown = ", ".join(f"{e.dataset} {e.subject}/{e.clip}" for e in selection.missing[:limit])
    more = f" and {len(selection.missing) - limit} more" if len(selection.missing) > limit else ""
    parts = ", ".join(f"{d} {n}" for d, n in sorted(per.items()))
    return f"{len(selection.missing)} listed MEGC2019 samples missing from the folders given ({parts}): {shown}{more}"
