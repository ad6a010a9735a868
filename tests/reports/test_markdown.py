"""The Prefect summary: top hits as a Markdown table, counts suppressed, data text inert."""

from __future__ import annotations

import pandas as pd

from models.figures.pages import top_hits
from reports.cells import SmallCells
from reports.markdown import summary_markdown
from tests.reports import fixtures as fx


def test_summary_lists_top_hits_suppressed_and_inert() -> None:
    a = fx.associations()
    hits = top_hits(a, 3)
    labels = {("report", "feature", 3): "liver | [x](javascript:alert(1)) <img src=x onerror=alert(1)>",
              ("report", "feature", 1): "c1"}
    md = summary_markdown(hits, {"liver_cancer": "Liver *cancer*"}, labels, SmallCells(10), "Run <b>")
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + len(hits) == 3  # header + the two ranked pairs
    first = lines[1].split(" | ")
    r = a[(a.split == "discovery") & (a.feature_id == 3) & (a.modality == "report") & (a.outcome_id == "liver_cancer")]
    assert first[1] == "1 of 6" and first[2] == "report #3" and first[4] == str(int(r["n_exposed_cases"].iloc[0]))
    assert "Liver cancer" in lines[1] and "javascript" in lines[1]
    for bad in ("<img", "](", "*", "<b>"):
        assert bad not in md.replace("<11", ""), bad
    second = lines[2].split(" | ")
    assert second[4] == "<11"  # report #1 has 9 exposed cases
    assert "No feature" in summary_markdown(hits.iloc[:0], {}, {}, SmallCells(10), "t")


def test_summary_counts_exact_when_suppression_is_off() -> None:
    hits = pd.DataFrame([{"modality": "image", "feature_id": 2, "outcome_id": "o", "rank": 1, "n_tested": 9,
                          "n_exposed": 50, "n_exposed_cases": 4, "adj_odds_ratio": 2.0, "adj_or_ci_low": 1.1,
                          "adj_or_ci_high": 3.6, "score_q": 0.01, "replicated": None}])
    assert "| 4 |" in summary_markdown(hits, {}, {}, SmallCells(0), "t")
    assert "| <11 |" in summary_markdown(hits, {}, {}, SmallCells(10), "t")
