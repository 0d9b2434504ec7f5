"""Every MER corpus reader by name, and one listing over several corpora.

`read_corpora({"casme2": path, "samm": path, ...})` reads each corpus with its own reader
(`mertk.corpora.<name>`); `merge_listings` joins their listings into one whose sample ids are
unique across corpora: where more than one corpus is read, every id (and every rejected input)
is prefixed with its corpus (`samm/006_1_2`, `casme2/sub01/EP02_01f`); a single corpus keeps its
own ids.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping

from mertk.corpora.casme2 import read_casme2
from mertk.corpora.casme3 import read_casme3
from mertk.corpora.mer import CorpusLayoutError, CorpusListing
from mertk.corpora.mmew import read_mmew
from mertk.corpora.samm import read_samm
from mertk.corpora.smic import read_smic
from mertk.shards.manifest import Rejection

READERS: dict[str, Callable[..., CorpusListing]] = {
    "casme2": read_casme2,
    "samm": read_samm,
    "smic": read_smic,
    "casme3": read_casme3,
    "mmew": read_mmew,
}
CORPORA = tuple(READERS)


def read_corpora(paths: Mapping[str, Path | str], casme2_layout: str = "auto", casme2_sheet: Path | str | None = None) -> list[CorpusListing]:
    """One listing per corpus given (in CORPORA order); CASME II takes its layout and sheet options."""
    unknown = sorted(set(paths) - set(READERS))
    if unknown:
        raise CorpusLayoutError(f"unknown corpus {', '.join(unknown)}; choose from {', '.join(CORPORA)}")
    if not paths:
        raise CorpusLayoutError(f"no corpus given; pass at least one of {', '.join('--' + c for c in CORPORA)}")
    listings = []
    for name in CORPORA:
        if name in paths:
            options = {"layout": casme2_layout, "sheet": casme2_sheet} if name == "casme2" else {}
            listings.append(READERS[name](paths[name], **options))
    return listings


def merge_listings(listings: list[CorpusListing]) -> CorpusListing:
    """One listing over several corpora (ids prefixed with the corpus); a single listing as it is."""
    if len(listings) == 1:
        return listings[0]
    samples, rejections = [], []
    for listing in listings:
        samples.extend(replace(s, local_id=s.qualified_id) for s in listing.samples)
        rejections.extend(replace(r, input=f"{listing.dataset}/{r.input}") for r in listing.rejections)
    return CorpusListing(
        root=Path(listings[0].root),
        layout="+".join(f"{l.dataset}:{l.layout}" for l in listings),
        sheet=None,
        samples=samples,
        rejections=rejections,
        dataset="+".join(l.dataset for l in listings),
    )
