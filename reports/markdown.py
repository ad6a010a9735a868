"""The run's top hits as Markdown, for the Prefect UI (a markdown artifact of the flow run).

Same rules as the HTML: patient counts pass small-cell suppression, no study identifiers.
Text from data is stripped of Markdown/HTML control characters, since the Prefect UI renders
Markdown and we do not want a label to become a link or markup there."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.cells import SmallCells
from reports.templates import DASH, missing, or_ci, pval

_UNSAFE = re.compile(r"[\\`*_{}\[\]<>()#|!~\r\n]+")


def md_text(x: Any, limit: int = 80) -> str:
    """Plain text safe in a Markdown table cell."""
    if missing(x):
        return DASH
    s = " ".join(_UNSAFE.sub(" ", str(x)).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def summary_markdown(hits: pd.DataFrame, names: Mapping[str, str], labels: Mapping[tuple[str, str, int], Any],
                     cells: SmallCells, title: str) -> str:
    """A Markdown table of `hits` (pages.HIT_COLUMNS rows): outcome, rank, feature, label,
    exposed cases, adjusted OR, adjusted q, replicated. `labels`: (modality, unit, id) -> label."""
    head = ["| Outcome | Rank | Feature / family | Label | Exposed cases | Adjusted OR (95% CI) | Adjusted q "
            "| Replicated |",
            "|---|---:|---|---|---:|---:|---:|---|"]
    rows = []
    for r in hits.to_dict("records"):
        unit = "feature" if missing(r.get("unit")) else str(r["unit"])
        key = (str(r["modality"]), unit, int(r["feature_id"]))
        rep = r.get("replicated")
        rows.append("| " + " | ".join([
            md_text(names.get(str(r["outcome_id"]), r["outcome_id"])), f"{int(r['rank'])} of {md_text(r['n_tested'])}",
            f"{md_text(key[0])}{' family' if unit == 'family' else ''} #{key[2]}", md_text(labels.get(key)),
            cells.part_plain(r["n_exposed_cases"], r["n_exposed"]),
            or_ci(r["adj_odds_ratio"], r["adj_or_ci_low"], r["adj_or_ci_high"]), pval(r["score_q"]),
            DASH if missing(rep) else ("yes" if bool(rep) else "no")]) + " |")
    body = "\n".join(head + rows) if rows else "No feature × outcome pair ranked in this run."
    sup = (f"\n\nCounts of 1–{cells.threshold} patients show as <{cells.limit}." if cells.active else "")
    return f"# {md_text(title)}\n\nTop hits (discovery rank within modality and outcome).\n\n{body}{sup}\n"
