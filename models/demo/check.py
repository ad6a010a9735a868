"""Compare a finished demo run with the generator's planted truth.

For each planted finding -> outcome link and each modality: the feature whose exposed
cohort best matches the finding's studies (Jaccard) and that feature's discovery-split rank
for the linked outcome (ranks are age+sex adjusted, among pairs passing the adjusted FDR).
The age-confounded finding's best feature must not rank within the top `max_rank` for any
outcome: after adjustment it should not pass FDR at all (rank null). `crude_q` (Fisher,
unadjusted) is recorded to show what the adjustment removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

COLUMNS = ["finding", "outcome", "role", "modality", "feature_id", "jaccard", "rank", "n_ranked",
           "odds_ratio", "adj_odds_ratio", "crude_q", "score_q", "replicated", "passed"]


def best_match(exposed: pd.DataFrame, studies: set[str]) -> tuple[int | None, float]:
    """(feature_id, Jaccard) of the cohort closest to `studies`."""
    best: tuple[int | None, float] = (None, 0.0)
    for fid, g in exposed.groupby("feature_id"):
        fid = cast(int, fid)
        members = set(g["study_id"])
        inter = len(members & studies)
        j = inter / len(members | studies) if members or studies else 0.0
        if j > best[1]:
            best = (int(fid), j)
    return best


def _lookup(assoc: pd.DataFrame, modality: str, fid: int | None, outcome: str) -> dict[str, Any]:
    row = assoc[(assoc["modality"] == modality) & (assoc["feature_id"] == fid) & (assoc["outcome_id"] == outcome)
                & (assoc["split"] == "discovery")]
    keys = ["rank", "n_ranked", "odds_ratio", "adj_odds_ratio", "crude_q", "score_q", "replicated"]
    if fid is None or row.empty:
        return dict.fromkeys(keys)
    r = row.iloc[0]

    def clean(v: Any) -> Any:
        return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v

    rank, rep = clean(r["rank"]), clean(r["replicated"])
    return {
        "rank": int(rank) if rank is not None else None,
        "n_ranked": clean(int(r["n_ranked"])),
        "odds_ratio": clean(float(r["odds_ratio"])),
        "adj_odds_ratio": clean(float(r["adj_odds_ratio"])),
        "crude_q": clean(float(r["q_value"])),
        "score_q": clean(float(r["score_q"])),
        "replicated": bool(rep) if rep is not None else None,
    }


def demo_check(
    truth: Mapping[str, Any], exposed: Mapping[str, pd.DataFrame], assoc: pd.DataFrame, max_rank: int = 3
) -> pd.DataFrame:
    rows = []
    findings = truth["findings"]
    outcomes = sorted(assoc["outcome_id"].unique())
    for link in truth["links"]:
        studies = set(findings[link["finding"]]["study_ids"])
        for modality, exp in sorted(exposed.items()):
            fid, j = best_match(exp, studies)
            info = _lookup(assoc, modality, fid, link["outcome"])
            ok = info["rank"] is not None and info["rank"] <= max_rank
            rows.append({"finding": link["finding"], "outcome": link["outcome"], "role": "planted_link",
                         "modality": modality, "feature_id": fid, "jaccard": round(j, 4), **info, "passed": ok})
    for conf in truth.get("confounded", []):
        studies = set(findings[conf["finding"]]["study_ids"])
        for modality, exp in sorted(exposed.items()):
            fid, j = best_match(exp, studies)
            for outcome in outcomes:
                info = _lookup(assoc, modality, fid, outcome)
                rows.append({"finding": conf["finding"], "outcome": outcome, "role": "age_confounded",
                             "modality": modality, "feature_id": fid, "jaccard": round(j, 4), **info,
                             "passed": info["rank"] is None or info["rank"] > max_rank})
    return pd.DataFrame(rows, columns=COLUMNS)


def check_passed(table: pd.DataFrame) -> bool:
    """Every planted link found within the rank limit in at least one modality, and the
    age-confounded finding never within the rank limit."""
    links = table[table["role"] == "planted_link"]
    link_ok = links.groupby(["finding", "outcome"])["passed"].any().all() if len(links) else False
    conf = table[table["role"] == "age_confounded"]
    return bool(link_ok and conf["passed"].all())
