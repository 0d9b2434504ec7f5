"""The MER evaluation protocols the trainer knows: class set and where a sample's class comes from.

One place for protocol handling: a new protocol (a composite one such as MEGC2019, another
corpus's class set) is one more `MerProtocol` in `MER_PROTOCOLS`; the trainer, `mertk predict mer`
and the CLI's choice list read this table and nothing else. The class sets themselves live with
the metrics (mertk.metrics.mer.MER_PROTOCOL_CLASSES), which score the same protocols.
"""
from __future__ import annotations

from dataclasses import dataclass

from mertk.metrics.mer import MER_PROTOCOL_CLASSES


@dataclass(frozen=True)
class MerProtocol:
    name: str
    classes: tuple[str, ...]
    label_column: str  # unimer_sample column holding the sample's class under this protocol (null: not in it)
    datasets: tuple[str, ...] | None = None  # corpora the protocol pools (None: any)

    def accepts_dataset(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets


MER_PROTOCOLS: dict[str, MerProtocol] = {
    "5class": MerProtocol("5class", MER_PROTOCOL_CLASSES["5class"], "emotion_5class"),
    "3class": MerProtocol("3class", MER_PROTOCOL_CLASSES["3class"], "emotion_3class"),
}
PROTOCOL_NAMES: tuple[str, ...] = tuple(MER_PROTOCOLS)
LABEL_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(p.label_column for p in MER_PROTOCOLS.values()))


def protocol_by_name(name: str) -> MerProtocol:
    if name not in MER_PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOL_NAMES)}")
    return MER_PROTOCOLS[name]


def protocol_help() -> str:
    return "; ".join(f"{p.name} ({', '.join(p.classes)})" for p in MER_PROTOCOLS.values())
