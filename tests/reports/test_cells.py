"""Small-cell suppression rules, case by case, and the check that no shown figure lets a
small count be solved back."""

from __future__ import annotations

import re

import pytest

from reports.cells import SmallCells

C = SmallCells(10)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">")


@pytest.mark.parametrize(("n", "shown"), [(0, "0"), (1, "<11"), (10, "<11"), (11, "11"), (1234, "1,234"),
                                          (None, "–"), (float("nan"), "–")])
def test_counts(n: object, shown: str) -> None:
    assert C.plain(n) == shown and _text(C.count(n)) == shown


def test_threshold_is_configurable_and_zero_turns_it_off() -> None:
    assert SmallCells(0).plain(3) == "3" and not SmallCells(0).active
    assert SmallCells(4).plain(4) == "<5" and SmallCells(4).plain(5) == "5"
    assert SmallCells(0).share(3, 120)[0] == "2.5%"


def test_shares_never_reveal_a_small_count() -> None:
    assert C.share(3, 120) == ("&lt;9.2%", f"{11 / 120:.7g}")  # 3 of 120: bounded, and so is its sort key
    assert C.share(118, 120)[0] == "&gt;90.8%"  # 2 without the outcome: 118 > 120 - 11
    assert C.share(60, 120)[0] == "50.0%"
    assert C.share(0, 120)[0] == "0%"  # zero describes no one
    assert "suppressed" in C.share(0, 7)[0]  # the denominator itself is small
    for k in range(1, 11):  # every small k gives the same text: it cannot be told apart
        assert C.share(k, 500) == C.share(1, 500)


def test_parts_and_fractions_hide_complements() -> None:
    assert _text(C.part(95, 100)) == ">89" and _text(C.part(50, 100)) == "50" and _text(C.part(5, 100)) == "<11"
    assert _text(C.fraction(43, 50)) == ">39/50" and _text(C.fraction(7, 150)) == "<11/150"
    assert _text(C.fraction(20, 50)) == "20/50"
    assert C.count_v(5) == "10" and C.count_v(25) == "25"


def test_scores_from_suppressed_counts_are_rounded() -> None:
    assert C.score(0.9066, (43, 50, 7, 150)) == "≈0.9"
    assert C.score(0.75, (30, 50, 30, 150)) == "0.75"
    assert SmallCells(0).score(0.9066, (43, 50, 7, 150)) == "0.91"
