"""Compare a finished demo run with the generator's planted truth.

For each planted finding -> outcome link and each modality: the best feature and the best
family, i.e. the feature and the finding (a feature family, or a feature in no family: its
own family of one) whose exposed cohort best matches the finding's studies (Jaccard), and
their discovery-split rank for the linked outcome (ranks are age+sex adjusted, among pairs
passing the adjusted FDR; findings rank, a family's members are parts of it and do not).
The age-confounded finding's best feature and best family must not rank within the top
`max_rank` for any outcome: after adjustment they should not pass FDR at all (rank null).
`crude_q` (Fisher, unadjusted) is recorded to show what the adjustment removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

COLUMNS = ["finding", "outcome", "role", "modality", "best", "unit", "feature_id", "family_size", "jaccard", "rank",
           "n_ranked", "odds_ratio", "adj_odds_ratio", "crude_q", "score_q", "replicated", "passed"]


def best_match(exposed: pd.DataFrame, studies: set[str]) -> tuple[int | None, float]:
    """(feature_id, Jaccard) of the cohort closest to `studies`."""
    best: tuple[int | None, float] = (None, 0.0)
    for fid, g in exposed.groupby("feature_id", sort=True):
        fid = cast(int, fid)
        members = set(g["study_id"])
        inter = len(members & studies)
        j = inter / len(members | studies) if members or studies else 0.0
        if j > best[1]:
            best = (int(fid), j)
    return best


def _lookup(assoc: pd.DataFrame, modality: str, unit: str, fid: int | None, outcome: str) -> dict[str, Any]:
    row = assoc[(assoc["modality"] == modality) & (assoc["unit"] == unit) & (assoc["feature_id"] == fid)
                & (assoc["outcome_id"] == outcome) & (assoc["split"] == "discovery")]
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
    truth: Mapping[str, Any], exposed: Mapping[str, pd.DataFrame], assoc: pd.DataFrame, max_rank: int = 3,
    families: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """`exposed`: per modality, the exposed COHORTS rows (unit, feature_id, study_id);
    `families`: per modality, the FAMILIES rows (family_id, members)."""
    rows = []
    findings = truth["findings"]
    outcomes = sorted(assoc["outcome_id"].unique())
    for link in truth["links"]:
        studies = set(findings[link["finding"]]["study_ids"])
        for best in _best_units(exposed, studies, families or {}):
            info = _lookup(assoc, best["modality"], best["unit"], best["feature_id"], link["outcome"])
            ok = info["rank"] is not None and info["rank"] <= max_rank
            rows.append({"finding": link["finding"], "outcome": link["outcome"], "role": "planted_link", **best,
                         **info, "passed": ok})
    for conf in truth.get("confounded", []):
        studies = set(findings[conf["finding"]]["study_ids"])
        for best in _best_units(exposed, studies, families or {}):
            for outcome in outcomes:
                info = _lookup(assoc, best["modality"], best["unit"], best["feature_id"], outcome)
                rows.append({"finding": conf["finding"], "outcome": outcome, "role": "age_confounded", **best,
                             **info, "passed": info["rank"] is None or info["rank"] > max_rank})
    return pd.DataFrame(rows, columns=COLUMNS)


def _best_units(exposed: Mapping[str, pd.DataFrame], studies: set[str],
                families: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per modality: the best feature, and the best family (a feature family, or a feature
    in no family), each as {modality, best, unit, feature_id, family_size, jaccard}."""
    out = []
    for modality, exp in sorted(exposed.items()):
        fam = families.get(modality, pd.DataFrame(columns=["family_id", "members"]))
        size = {int(f): len(m) for f, m in zip(fam["family_id"], fam["members"], strict=True)}
        members = {int(x) for m in fam["members"] for x in m}
        unit = exp["unit"] if "unit" in exp.columns else pd.Series("feature", index=exp.index)
        feats = exp[unit == "feature"]
        fid, j = best_match(feats, studies)
        out.append({"modality": modality, "best": "feature", "unit": "feature", "feature_id": fid,
                    "family_size": None, "jaccard": round(j, 4)})
        lone = feats[~feats["feature_id"].isin(members)]
        cands = [("family", *best_match(exp[unit == "family"], studies)), ("feature", *best_match(lone, studies))]
        u, f, jj = max(cands, key=lambda c: c[2])  # on a tie the family (listed first)
        out.append({"modality": modality, "best": "family", "unit": u, "feature_id": f,
                    "family_size": None if f is None else (size.get(f, 0) if u == "family" else 1),
                    "jaccard": round(jj, 4)})
    return out


def check_passed(table: pd.DataFrame) -> bool:
    """Every planted link found within the rank limit in at least one modality (by its
    best feature or its best family), and the age-confounded finding's best feature and
    family never within the rank limit."""
    links = table[table["role"] == "planted_link"]
    link_ok = links.groupby(["finding", "outcome"])["passed"].any().all() if len(links) else False
    conf = table[table["role"] == "age_confounded"]
    return bool(link_ok and conf["passed"].all())
