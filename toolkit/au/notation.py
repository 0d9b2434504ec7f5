"""Action Unit notation of the MER coding sheets: one parser for every corpus' 'Action Units' cell.

The corpora write FACS codes in several dialects; this module reads all of them into the same
records and normalises each token:

* CASME II: ``4``, ``1+2``, ``R12``, ``L10+R12``, ``4+7+L10``, numbers stored as numbers, spaces
  around ``+``, and ``?`` where the coders were unsure (``AuCoding.uncertain``);
* SAMM: intensity letters A-E after the number (``12A``, ``R14A``), an ``A`` prefix (asymmetric,
  ``A14C``), two intensities the coders hesitated between (``10A/B``), a referenced code
  (``ref(7B)``), alternatives (``(R6 or R12)+R15``, ``L12 or L14``, ``A/L12``), trailing spaces;
* CAS(ME)^3: top / bottom lip prefixes (``T28``, ``B23``), every cell stored as text;
* MMEW: side letters before or after the number (``L14``, ``12L``, ``4R+7``).

An alternative is kept as one group of options (`AuCoding.alternatives`), never resolved here:
the Uni-MER builder settles it with the flow.

Sides "L"/"R" are the subject's sides (see `mertk.au.facs`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

# Prefix letters that are not a side: A asymmetric, U unilateral (side not given), T / B top /
# bottom lip (FACS' notation for AU28 and the lip AUs, used by CAS(ME)^3).
MARKERS = ("A", "U", "T", "B")
REFERENCE_MARKER = "ref"  # SAMM's ref(7B): a code the coders cite as a reference


class AuParseError(ValueError):
    """An 'Action Units' cell holds a token that is not an AU."""

    def __init__(self, token: str, cell: str):
        self.token = token
        self.cell = cell
        super().__init__(f"not an Action Unit: {token!r} in {cell!r} (expected e.g. 4, R12, 12L, AU12, R14A, 10A/B, T28, L12 or L14)")


@dataclass(frozen=True)
class AuLabel:
    """One AU of a sheet cell.

    `side` "L"/"R" (subject's side) or None for both; `intensity` A-E, or "A/B" where the coders
    gave two (SAMM), or None; `marker` a prefix that is not a side ("A", "U", "T", "B") or "ref".
    """

    au: int
    side: str | None = None
    intensity: str | None = None
    marker: str | None = None

    def __str__(self) -> str:
        core = f"{self.side or ''}{self.au}{self.intensity or ''}"
        if self.marker == REFERENCE_MARKER:
            return f"ref({core})"
        return f"{self.marker or ''}{core}"


Option = tuple[AuLabel, ...]  # one choice of an alternative: one AU, or several coded together


@dataclass(frozen=True)
class AuCoding:
    """A parsed 'Action Units' cell.

    `labels` are the definite AUs in cell order; each entry of `alternatives` is one group of
    options written with ``or`` (or ``/`` between codes or side letters), of which the coders
    meant one; `uncertain` is True for a ``?`` cell (or token).
    """

    labels: tuple[AuLabel, ...] = ()
    alternatives: tuple[tuple[Option, ...], ...] = ()
    uncertain: bool = False

    @property
    def text(self) -> str:
        """The normalised spelling: '4+7+L10', '(R6 or R12)+R15', '?'."""
        parts = [str(label) for label in self.labels]
        for group in self.alternatives:
            parts.append("(" + " or ".join("+".join(str(l) for l in option) for option in group) + ")")
        if self.uncertain:
            parts.append("?")
        return "+".join(parts)

    @property
    def every_label(self) -> tuple[AuLabel, ...]:
        """Definite labels, then every option's labels (each once)."""
        seen: list[AuLabel] = list(self.labels)
        for group in self.alternatives:
            for option in group:
                seen.extend(label for label in option if label not in seen)
        return tuple(seen)

    @property
    def is_empty(self) -> bool:
        return not self.labels and not self.alternatives


# marker/side prefix letters (several with '/': side alternatives), optional "AU", 1-2 digits,
# optional ".0" from numeric cells, optional intensity (or two with '/'), optional side suffix.
_TOKEN = re.compile(
    r"^(?:AU)?\s*(?P<prefix>[LRAUTB](?:\s*/\s*[LRAUTB])*)?\s*(?:AU)?\s*(?P<number>\d{1,2})(?:\.0+)?"
    r"\s*(?P<intensity>[A-E](?:\s*/\s*[A-E])?)?\s*(?P<suffix>[LR])?$",
    re.IGNORECASE,
)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
_REFERENCE = re.compile(r"^ref\s*\((?P<inner>.*)\)$", re.IGNORECASE)


def _is_missing(cell: object) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and cell.strip() == ""


def _cell_as_text(cell: object) -> str:
    if isinstance(cell, bool):
        raise AuParseError(str(cell), str(cell))
    if isinstance(cell, (int, np.integer)):
        return str(int(cell))
    if isinstance(cell, (float, np.floating)):
        if not float(cell).is_integer():
            raise AuParseError(str(cell), str(cell))
        return str(int(cell))
    if isinstance(cell, str):
        return cell
    raise AuParseError(repr(cell), repr(cell))


def _split_top_level(text: str, separators: str = "+,") -> list[str]:
    """Split at separators outside parentheses."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char in separators and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _unwrap(text: str) -> str:
    """'((R6 or R12))' -> 'R6 or R12' (only parentheses that enclose the whole text)."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for index, char in enumerate(text):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and index < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def _token_options(token: str, cell: str) -> list[AuLabel]:
    """One code, e.g. 'R14A', '12L', 'A/L12' (two options), 'T28', '10A/B' -> its label(s)."""
    match = _TOKEN.match(token)
    if match is None:
        raise AuParseError(token, cell)
    au = int(match["number"])
    if au < 1:
        raise AuParseError(token, cell)
    intensity = re.sub(r"\s", "", match["intensity"]).upper() if match["intensity"] else None
    suffix = match["suffix"].upper() if match["suffix"] else None
    prefixes = [p.strip().upper() for p in match["prefix"].split("/")] if match["prefix"] else [None]
    labels = []
    for prefix in prefixes:
        side = prefix if prefix in ("L", "R") else None
        marker = prefix if prefix in MARKERS else None
        if side and suffix and side != suffix:
            raise AuParseError(token, cell)
        label = AuLabel(au, side or suffix, intensity, marker)
        if label not in labels:
            labels.append(label)
    return labels


def _option(text: str, cell: str) -> list[Option]:
    """One side of an 'or' -> its options (several where '/' separates codes or side letters)."""
    text = _unwrap(text)
    reference = _REFERENCE.match(text)
    if reference:
        return [tuple(AuLabel(l.au, l.side, l.intensity, REFERENCE_MARKER) for l in option) for option in _option(reference["inner"], cell)]
    if "+" in text or "," in text:  # several codes meant together, e.g. '(R6+R12) or R15'
        labels: list[AuLabel] = []
        for part in _split_top_level(text):
            options = _option(part, cell)
            if len(options) != 1:
                raise AuParseError(part.strip(), cell)
            labels.extend(options[0])
        return [tuple(labels)]
    pieces = [p.strip() for p in text.split("/")]
    if len(pieces) > 1 and all(re.search(r"\d", p) for p in pieces):  # '12/14': codes as alternatives
        return [option for piece in pieces for option in _option(piece, cell)]
    return [(label,) for label in _token_options(text.strip(), cell)]


def parse_au_cell(cell: object) -> AuCoding:
    """Parse any corpus' 'Action Units' cell (see the module docstring for the dialects).

    An empty cell gives an empty coding; ``?`` marks it uncertain; any other token that is not
    an AU raises AuParseError naming it. Duplicate definite labels are dropped.
    """
    if _is_missing(cell):
        return AuCoding()
    text = _cell_as_text(cell).strip()
    labels: list[AuLabel] = []
    alternatives: list[tuple[Option, ...]] = []
    uncertain = False
    for raw in _split_top_level(text):
        term = _unwrap(raw)
        if term in ("?", "？"):
            uncertain = True
            continue
        if not term:
            raise AuParseError(raw.strip(), text)
        options: list[Option] = []
        for side in _OR.split(term):
            options.extend(o for o in _option(side, text) if o not in options)
        if len(options) == 1:
            labels.extend(label for label in options[0] if label not in labels)
        else:
            alternatives.append(tuple(options))
    return AuCoding(tuple(labels), tuple(alternatives), uncertain)


def parse_au_string(cell: object) -> list[AuLabel]:
    """Parse a cell that lists definite AUs only (CASME II style) into labels, in cell order.

    Accepts numbers (4, 4.0 from numeric cells), '+'- or ','-separated tokens with spaces
    ('4+7+L10', 'R12 + R15'), side letters before or after the number, an 'AU' prefix and
    intensity suffixes A-E. An empty cell gives []. A cell with alternatives or '?' raises
    AuParseError: read those with `parse_au_cell`.
    """
    coding = parse_au_cell(cell)
    if coding.uncertain:
        raise AuParseError("?", str(cell))
    if coding.alternatives:
        raise AuParseError(coding.text, str(cell))
    return list(coding.labels)


def format_au_labels(labels: Iterable[AuLabel]) -> str:
    """The sheet spelling of labels: '4+7+L10'."""
    return "+".join(str(label) for label in labels)
