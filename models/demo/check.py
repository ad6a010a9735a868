"""Compare a finished demo run with the generator's planted truth.

For each planted finding -> outcome link and each modality: the best feature and the best
family, i.e. the feature and the finding (a feature family, or a feature in no family: its
own family of one) whose exposed cohort best matches the finding's studies (Jaccard), and
their discovery-split rank for the linked outcome (ranks are age+sex adjusted, among pairs
passing the adjusted FDR; findings rank, a family's members are parts of it and do not).
Every modality whose input carries the finding (truth.json lists them) must find it: its
best finding matches with Jaccard >= MIN_JACCARD and ranks within `max_rank`. The
age-confounded finding must be matched too, and its best finding must not rank within
`max_rank` for any outcome: after adjustment it should not pass FDR at all (rank null).
The best feature's row is reported beside it (not gated: when it is a family member it
has no rank of its own). `crude_q` (Fisher, unadjusted) is recorded to show what the
adjustment removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

COLUMNS = ["finding", "outcome", "role", "modality", "best", "unit", "feature_id", "family_size", "jaccard", "rank",
           "n_ranked", "odds_ratio", "adj_odds_ratio", "crude_q", "score_q", "replicated", "required", "passed"]
# The cohort must be the finding, not a neighbour of it: Jaccard >= 1/3 is Dice (the F1 of
# the cohort as a detector of the finding's studies) >= 1/2, i.e. precision and recall at
# least one half in harmonic mean. (Measured on the default demo: image cirrhosis 0.367,
# image spondylosis 0.452, report and the rest 0.62-0.84; a random 10% cohort scores ~0.05.)
MIN_JACCARD = 1 / 3
LABEL_COLUMNS = ["finding", "role", "modality", "unit", "feature_id", "jaccard", "label", "heldout_ba", "ba_ci_low",
                 "ba_ci_high", "truth_ba", "decile_recall", "baseline_label", "baseline_ba", "names_finding",
                 "ba_at_least_min", "passed"]


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
    units = assoc["unit"] if "unit" in assoc.columns else pd.Series("feature", index=assoc.index)
    row = assoc[(assoc["modality"] == modality) & (units == unit) & (assoc["feature_id"] == fid)
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
    min_jaccard: float = MIN_JACCARD, families: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per (planted link or confounded finding x outcome), modality and `best`
    (feature | family). `exposed`: per modality, the exposed COHORTS rows (unit, feature_id,
    study_id); `families`: per modality, the FAMILIES rows (family_id, members). A family row
    is `required` when the finding's truth lists the modality (its input carries the
    finding); it passes when the best finding overlaps the finding's studies with Jaccard >=
    `min_jaccard` and, for a link, ranks within `max_rank` for the linked outcome, for the
    confounded finding, within `max_rank` for no outcome. Feature rows apply the same test
    and are never required."""
    rows = []
    findings = truth["findings"]
    outcomes = sorted(assoc["outcome_id"].unique())
    checks = [(link["finding"], [link["outcome"]], "planted_link") for link in truth["links"]]
    checks += [(conf["finding"], outcomes, "age_confounded") for conf in truth.get("confounded", [])]
    for finding, outs, role in checks:
        f = findings[finding]
        studies = set(f["study_ids"])
        for best in _best_units(exposed, studies, families or {}):
            for outcome in outs:
                info = _lookup(assoc, best["modality"], best["unit"], best["feature_id"], outcome)
                within = info["rank"] is not None and info["rank"] <= max_rank
                ok = best["jaccard"] >= min_jaccard and (within if role == "planted_link" else not within)
                required = best["best"] == "family" and best["modality"] in f.get("modalities", list(exposed))
                rows.append({"finding": finding, "outcome": outcome, "role": role, **best, **info,
                             "required": required, "passed": ok})
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


def label_check(
    truth: Mapping[str, Any], exposed: Mapping[str, pd.DataFrame], interp: Mapping[str, pd.DataFrame],
    names: Mapping[str, tuple[str, ...]], min_ba: float = 0.9, baseline_band: tuple[float, float] = (0.3, 0.7),
    families: Mapping[str, pd.DataFrame] | None = None,
    ceiling: Callable[[str, str, str, int], float | None] | None = None,
) -> pd.DataFrame:
    """Per planted finding and modality, the label of the best finding (the family, or the
    feature in no family, whose cohort best matches it; with no families, the best
    feature): `passed` when it names the finding (contains one of `names[finding]`) and the
    shuffled-label baseline on the same held-out reports sits near chance. Whether held-out
    balanced accuracy reaches `min_ba` is reported beside it (`ba_at_least_min`), not gated:
    it measures the cohort as much as the label (activating reports are drawn across all
    activation deciles, and the weakest deciles of a feature that fires on few studies need
    not show the finding; `decile_recall` shows where). `ceiling(finding, modality, unit,
    feature_id)`, when given, fills `truth_ba`: the score of the planted truth itself on the
    same held-out reports (models.demo.ceiling), what a label naming exactly the finding scores."""
    rows = []
    for finding, words in names.items():
        studies = set(truth["findings"][finding]["study_ids"])
        for best in _best_units(exposed, studies, families or {}):
            if best["best"] != "family":
                continue
            modality, unit, fid = best["modality"], best["unit"], best["feature_id"]
            it = interp.get(modality, pd.DataFrame(columns=["unit", "feature_id"]))
            it_unit = it["unit"] if "unit" in it.columns else pd.Series("feature", index=it.index)
            hit = it[(it_unit == unit) & (it["feature_id"] == fid)].to_dict("records") if fid is not None else []
            r = hit[0] if hit else {}
            label = str(r.get("label", ""))
            ba, base = _num(r.get("heldout_balanced_accuracy")), _num(r.get("baseline_balanced_accuracy"))
            named = any(w in label.lower() for w in words)
            ok = named and base is not None and baseline_band[0] <= base <= baseline_band[1]
            rows.append({"finding": finding, "role": "label", "modality": modality, "unit": unit, "feature_id": fid,
                         "jaccard": best["jaccard"], "label": label, "heldout_ba": ba,
                         "ba_ci_low": _num(r.get("ba_ci_low")), "ba_ci_high": _num(r.get("ba_ci_high")),
                         "truth_ba": ceiling(finding, modality, unit, fid) if ceiling and fid is not None else None,
                         "decile_recall": [_num(v) for v in r.get("decile_recall", [])],
                         "baseline_label": r.get("baseline_label"), "baseline_ba": base, "names_finding": named,
                         "ba_at_least_min": ba is not None and ba >= min_ba, "passed": bool(ok)})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else round(float(v), 4)


def check_passed(table: pd.DataFrame) -> bool:
    """Every required row passed, and every planted link has a required row (a link that
    no modality was checked for fails). Required rows are the best findings' (families, or
    features in no family); the best feature's rows are reported beside them."""
    req = table[table["required"].astype(bool)]
    links = table[table["role"] == "planted_link"][["finding", "outcome"]].drop_duplicates()
    checked = req[req["role"] == "planted_link"][["finding", "outcome"]].drop_duplicates()
    return bool(len(links) and len(checked) == len(links) and req["passed"].all())
