"""AUs read from the flow where the coding sheet does not settle them.

Two cases, both judged with the dual constraint's own scores (`mertk.au.evidence`):

* **Alternatives** (SAMM's `L12 or L14`, `(R6 or R12)+R15`): the coders meant one option of each
  group. `settle_alternatives` scores every option on the sample's region motion; an option is a
  candidate when all of its primary regions are supported, and the candidate with the most
  supported primary regions wins (both sides over one: `A/L12`), then the one whose regions move
  most (an AU over the weaker drag of a neighbour's motion, e.g. AU12's cheek lift read as AU6);
  a group none of whose options the flow supports stays unsettled. The choice and the scores are
  recorded, so a caption names the settled option and the record says why.
* **No AU coding** (SMIC, CASME II rows whose Action Units cell is `?`): `flow_only_aus` lists the
  coherent motions the flow shows, strongest first, each named with the AU of the FACS table
  whose direction fits it best; motion that is only dragged skin next to a stronger motion
  already named (`is_spill`) is left out. Nothing here claims an AU was coded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from mertk.au.evidence import EvidenceParameters, RegionMotion, find_unlabelled_motion, is_spill, score_labels
from mertk.au.facs import SIDES, au_spec
from mertk.au.notation import AuLabel, Option


@dataclass(frozen=True)
class Settlement:
    """One group of alternatives and what the flow says of each option.

    `chosen` is the index of the option the flow supports best, or None when it supports none;
    `scores` holds each option's mean primary-region score (in [-1, 1]) and `supported` whether
    every primary region of the option is supported.
    """

    options: tuple[Option, ...]
    chosen: int | None
    scores: tuple[float, ...]
    supported: tuple[bool, ...]

    @property
    def chosen_labels(self) -> tuple[AuLabel, ...]:
        return self.options[self.chosen] if self.chosen is not None else ()

    @property
    def text(self) -> str:
        """'L12 or L14 -> L12 (flow scores 0.91, -0.20)' for the record."""
        names = " or ".join("+".join(str(l) for l in option) for option in self.options)
        result = "+".join(str(l) for l in self.chosen_labels) if self.chosen is not None else "none supported"
        return f"{names} -> {result} (flow scores {', '.join(f'{s:.2f}' for s in self.scores)})"


def settle_alternatives(groups: Sequence[Sequence[Option]], motions: Sequence[RegionMotion], params: EvidenceParameters) -> list[Settlement]:
    """The option of each group that the flow supports best (see the module docstring)."""
    settlements = []
    for group in groups:
        scores, supported, ranks = [], [], []
        for option in group:
            primary = [row for row in score_labels(list(option), motions, params) if row.primary]
            scores.append(sum(row.score for row in primary) / len(primary) if primary else -1.0)
            supported.append(bool(primary) and all(row.supported for row in primary))
            ranks.append((len(primary), sum(row.magnitude for row in primary) / len(primary) if primary else 0.0))
        candidates = [index for index, ok in enumerate(supported) if ok]
        chosen = max(candidates, key=lambda index: (ranks[index], -index)) if candidates else None
        settlements.append(Settlement(tuple(tuple(o) for o in group), chosen, tuple(scores), tuple(supported)))
    return settlements


@dataclass(frozen=True)
class FlowAu:
    """A coherent motion the flow shows, named with the AU that fits its direction best.

    `side` None = the same AU on both sides; `magnitude` in percent of inter-ocular distance
    (the larger side's); `regions` the (region, side) pairs it was read from.
    """

    au: int
    side: str | None
    magnitude: float
    regions: tuple[tuple[str, str], ...]


def flow_only_aus(motions: Sequence[RegionMotion], params: EvidenceParameters) -> list[FlowAu]:
    """AUs the flow alone suggests, strongest first (see the module docstring).

    A motion is kept when `find_unlabelled_motion` (with no labels) records it with a best-fitting
    AU and it is not spill of a stronger motion kept before it; an AU kept on both sides comes
    back once with side None.
    """
    by_key = {(m.region, m.side): m for m in motions}
    found = sorted(find_unlabelled_motion(motions, [], params), key=lambda u: (-u.magnitude, u.region, u.side or ""))
    kept: dict[tuple[str, str | None], RegionMotion] = {}
    per_au: dict[int, dict[str, tuple[float, list[tuple[str, str]]]]] = {}
    order: list[int] = []
    for motion in found:
        if motion.au is None:
            continue
        region_motion = by_key[(motion.region, motion.side)]
        if is_spill(region_motion, kept, params):
            continue
        kept[(motion.region, motion.side)] = region_motion
        spec = au_spec(motion.au)
        if spec is not None and motion.region != spec.primary.region and (spec.primary.region, motion.side) in kept:
            continue  # a secondary region of an AU already read from its main region
        sides = per_au.setdefault(motion.au, {})
        if motion.au not in order:
            order.append(motion.au)
        magnitude, regions = sides.get(motion.side, (0.0, []))
        sides[motion.side] = (max(magnitude, motion.magnitude), regions + [(motion.region, motion.side)])
    result = []
    for au in order:
        sides = per_au[au]
        if set(sides) == set(SIDES):
            result.append(FlowAu(au, None, max(m for m, _ in sides.values()), tuple(r for _, rs in sides.values() for r in rs)))
        else:
            for side, (magnitude, regions) in sides.items():
                result.append(FlowAu(au, side, magnitude, tuple(regions)))
    return result
