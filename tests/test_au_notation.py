"""The one AU-notation parser: every corpus' dialect, normalised, and broken cells named."""
from __future__ import annotations

import pytest

from mertk.au.notation import AuCoding, AuLabel, AuParseError, parse_au_cell, parse_au_string


def _labels(coding: AuCoding) -> list[str]:
    return [str(label) for label in coding.labels]


def _groups(coding: AuCoding) -> list[list[str]]:
    return [["+".join(str(l) for l in option) for option in group] for group in coding.alternatives]


@pytest.mark.parametrize(
    "cell, labels, groups",
    [
        # CASME II
        ("4+7+L10", ["4", "7", "L10"], []),
        (12, ["12"], []),
        (" 4 + 7 ", ["4", "7"], []),
        # SAMM: intensities, asymmetric marker, hesitation between intensities, references
        ("12A", ["12A"], []),
        ("A14C", ["A14C"], []),
        ("10A/B", ["10A/B"], []),
        ("ref(7B)+43", ["ref(7B)", "43"], []),
        ("R14A ", ["R14A"], []),
        # SAMM alternatives, kept as groups of options
        ("(R6 or R12)+R15", ["R15"], [["R6", "R12"]]),
        ("L12 or L14", [], [["L12", "L14"]]),
        ("A/L12", [], [["A12", "L12"]]),
        ("4+(12/14)", ["4"], [["12", "14"]]),
        ("(R6+R12) OR R15", [], [["R6+R12", "R15"]]),
        # CAS(ME)^3: top / bottom lip prefixes
        ("T28+14", ["T28", "14"], []),
        ("B23", ["B23"], []),
        # MMEW: side letters before or after the number
        ("L14", ["L14"], []),
        ("12L", ["L12"], []),
        ("4R+7", ["R4", "7"], []),
        ("", [], []),
    ],
)
def test_dialects_are_normalised(cell, labels, groups):
    coding = parse_au_cell(cell)
    assert _labels(coding) == labels
    assert _groups(coding) == groups
    assert not coding.uncertain


def test_side_after_the_number_is_the_same_label_as_before():
    assert parse_au_cell("12L").labels == parse_au_cell("L12").labels == (AuLabel(12, "L"),)
    assert parse_au_cell("A14C").labels == (AuLabel(14, None, "C", "A"),)


def test_question_mark_is_uncertain_not_an_error():
    coding = parse_au_cell("?")
    assert coding.uncertain and coding.is_empty and coding.text == "?"
    assert parse_au_cell(" ? ").uncertain
    with pytest.raises(AuParseError):  # the strict parser still refuses it
        parse_au_string("?")


def test_normalised_text_and_every_label():
    coding = parse_au_cell("(R6 or R12)+R15")
    assert coding.text == "R15+(R6 or R12)"
    assert [str(l) for l in coding.every_label] == ["R15", "R6", "R12"]
    assert parse_au_cell(coding.text) == coding  # the normalised spelling reads back the same


def test_strict_parser_refuses_alternatives():
    with pytest.raises(AuParseError):
        parse_au_string("L12 or L14")


@pytest.mark.parametrize("cell, token", [("4+X7", "X7"), ("L12R", "L12R"), ("12 or", "12 or"), ("4++7", ""), ("ref()", "")])
def test_broken_cells_name_the_token(cell, token):
    with pytest.raises(AuParseError) as info:
        parse_au_cell(cell)
    assert info.value.token == token
