"""The MER evaluation protocols the trainer knows: class set and where a sample's class comes from.

One place for protocol handling: a new protocol (a composite one such as MEGC2019, another
corpus's class set) is one more `MerProtocol` in `MER_PROTOCOLS`; the trainer, `mertk predict mer`
and the CLI's choice list read this table and nothing else. A sample's classes under every
protocol (`sample_labels`) are annotations: training targets and scores, never model inputs.
The cross-corpus protocol (train on some datasets, test on others) is a choice of folds
(`sample_folds`) over any class set. The class sets themselves live with
the metrics (mertk.metrics.mer.MER_PROTOCOL_CLASSES), which score the same protocols.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mertk.corpora.megc2019 import DATASETS, composite_key, load_composite_list
from mertk.corpora.megc2019 import PROTOCOL as MEGC2019
from mertk.metrics.mer import MER_PROTOCOL_CLASSES
from mertk.training.errors import TrainingError


@dataclass(frozen=True)
class MerProtocol:
    name: str
    classes: tuple[str, ...]
    # where the sample's class under this protocol is read (None: not in it): a unimer_sample column
    # (v1 and v2), an entry of v2's `protocol_labels`, or, with `selected_by`, a published list
    label_column: str
    datasets: tuple[str, ...] | None = None  # corpora the protocol pools (None: any)
    selected_by: str | None = None  # the published list that names the protocol's samples and labels

    def accepts_dataset(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def rejection_reason(self, emotion: str) -> str:
        if self.selected_by is not None:
            return f"not in {self.selected_by}"
        return f"emotion {emotion!r} is not in the {self.name} protocol"


MER_PROTOCOLS: dict[str, MerProtocol] = {
    "5class": MerProtocol("5class", MER_PROTOCOL_CLASSES["5class"], "emotion_5class"),
    "3class": MerProtocol("3class", MER_PROTOCOL_CLASSES["3class"], "emotion_3class"),
    # the composite benchmark: the organisers' list names its samples and their labels (mertk.corpora.megc2019)
    MEGC2019: MerProtocol(MEGC2019, MER_PROTOCOL_CLASSES[MEGC2019], MEGC2019, DATASETS, selected_by="the MEGC2019 composite list"),
    # CAS(ME)^3's own class sets: entries of unimer_sample.v2 `protocol_labels`
    **{name: MerProtocol(name, MER_PROTOCOL_CLASSES[name], name) for name in ("casme3-3class", "casme3-4class", "casme3-7class")},
}
PROTOCOL_NAMES: tuple[str, ...] = tuple(MER_PROTOCOLS)
LABEL_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(p.label_column for p in MER_PROTOCOLS.values()))
# label columns that are unimer_sample columns (the others come from `protocol_labels` or a list)
ROW_LABEL_COLUMNS: tuple[str, ...] = ("emotion_5class", "emotion_3class")


class MerProtocolError(TrainingError):
    """The data holds no sample for a part of the protocol (e.g. a cross-corpus dataset)."""


def cross_corpus_fold(train_on: list[str], test_on: list[str]) -> str:
    """The one fold of the cross-corpus protocol, e.g. `samm+smic-to-casme2`."""
    return f"{'+'.join(train_on)}-to-{'+'.join(test_on)}"


def sample_folds(subjects: list[str], datasets: list[str], train_on: list[str], test_on: list[str], where: str) -> list[str]:
    """The fold that holds each sample out: its subject under leave-one-subject-out; cross-corpus
    (train_on + test_on), the one fold for the test datasets' samples and none ("") for the
    training datasets' samples, which are never held out."""
    if not train_on:
        return list(subjects)
    for role, names in (("--train-on", train_on), ("--test-on", test_on)):
        if not set(datasets) & set(names):
            raise MerProtocolError(f"{where}: no samples of {', '.join(names)} ({role})")
    fold = cross_corpus_fold(train_on, test_on)
    return [fold if dataset in test_on else "" for dataset in datasets]


def composite_labels() -> dict[tuple[str, int, str], str]:
    """The MEGC2019 list's label of each listed sample, by composite key (dataset, subject, clip)."""
    return {entry.key: entry.label for entry in load_composite_list()}


def sample_labels(row: dict[str, Any], composite: dict[tuple[str, int, str], str]) -> dict[str, str | None]:
    """A unimer_sample row's class under every protocol (None: not in it). Labels are annotations:
    training targets and scores, never model inputs."""
    listed = {item["protocol"]: item["label"] for item in row.get("protocol_labels") or []}
    labels = {column: row[column] if column in ROW_LABEL_COLUMNS else listed.get(column) for column in LABEL_COLUMNS}
    labels[MEGC2019] = composite.get(composite_key(row["dataset"], row["subject"], row["episode"]))
    return labels


def protocol_by_name(name: str) -> MerProtocol:
    if name not in MER_PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOL_NAMES)}")
    return MER_PROTOCOLS[name]


def protocol_help() -> str:
    return "; ".join(f"{p.name} ({', '.join(p.classes)})" for p in MER_PROTOCOLS.values())
