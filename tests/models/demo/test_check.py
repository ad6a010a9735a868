"""The demo self-check (models/demo/check.py) on constructed tables: it passes only when
every modality that carries a planted finding finds it, with a cohort that really is the
finding (minimum Jaccard), and the age-confounded finding ranks for nothing."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from models.demo.check import MIN_JACCARD, check_passed, demo_check

STUDIES = [f"s{i:03d}" for i in range(100)]
CIRRHOSIS, SPONDY = STUDIES[:20], STUDIES[40:60]
OUTCOMES = ["liver_cancer", "heart_failure"]


def _truth(cirrhosis_modalities: tuple[str, ...] = ("image", "report")) -> dict[str, Any]:
    return {"findings": {"cirrhosis": {"study_ids": CIRRHOSIS, "modalities": list(cirrhosis_modalities)},
                         "spondylosis": {"study_ids": SPONDY, "modalities": ["image", "report"]}},
            "links": [{"finding": "cirrhosis", "outcome": "liver_cancer"}],
            "confounded": [{"finding": "spondylosis", "via": "age"}]}


def _exposed(cirrhosis: list[str] = CIRRHOSIS) -> pd.DataFrame:
    """Feature 0 = the cirrhosis cohort, 1 = spondylosis, 2 = unrelated."""
    rows = [(0, s) for s in cirrhosis] + [(1, s) for s in SPONDY] + [(2, s) for s in STUDIES[80:95]]
    return pd.DataFrame(rows, columns=["feature_id", "study_id"])


def _assoc(ranks: dict[tuple[str, int, str], int]) -> pd.DataFrame:
    rows = []
    for m in ("image", "report"):
        for f in range(3):
            for o in OUTCOMES:
                rows.append({"modality": m, "feature_id": f, "outcome_id": o, "split": "discovery",
                             "rank": ranks.get((m, f, o)), "n_ranked": 3, "odds_ratio": 2.0,
                             "adj_odds_ratio": 1.9, "q_value": 0.01, "score_q": 0.01, "replicated": True})
    df = pd.DataFrame(rows)
    df["rank"] = df["rank"].astype("Int32")
    return df


GOOD = {("image", 0, "liver_cancer"): 1, ("report", 0, "liver_cancer"): 2, ("report", 2, "heart_failure"): 1}


def _run(assoc: pd.DataFrame, truth: dict[str, Any] | None = None,
         exposed: dict[str, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, bool]:
    """The gated rows (best = family: with no families every feature is its own family of
    one, so they are the best features) and the verdict; the best feature's rows are
    reported beside them and never required."""
    t = demo_check(truth or _truth(), exposed or {"image": _exposed(), "report": _exposed()}, assoc)
    feat, fam = t[t["best"] == "feature"], t[t["best"] == "family"]
    assert not feat["required"].any() and len(feat) == len(fam)
    assert feat["feature_id"].tolist() == fam["feature_id"].tolist()
    return fam, check_passed(t)


def test_passes_when_every_carrying_modality_finds_the_link() -> None:
    table, ok = _run(_assoc(GOOD))
    assert ok
    link = table[table["role"] == "planted_link"]
    assert list(link["modality"]) == ["image", "report"] and (link["feature_id"] == 0).all()
    assert (link["jaccard"] == 1.0).all() and link["required"].all()
    assert len(table[table["role"] == "age_confounded"]) == 2 * len(OUTCOMES)


def test_one_modality_missing_the_link_fails() -> None:
    ranks = {**GOOD, ("image", 0, "liver_cancer"): 5}  # image ranks it, but outside the top 3
    table, ok = _run(_assoc(ranks))
    assert not ok
    assert not table.query("role == 'planted_link' and modality == 'image'")["passed"].iloc[0]
    unranked = {k: v for k, v in GOOD.items() if k != ("report", 0, "liver_cancer")}
    assert not _run(_assoc(unranked))[1]


def test_a_modality_whose_input_lacks_the_finding_is_not_required() -> None:
    ranks = {k: v for k, v in GOOD.items() if k[0] != "image"}
    assert not _run(_assoc(ranks))[1]
    table, ok = _run(_assoc(ranks), truth=_truth(("report",)))
    assert ok
    image = table.query("role == 'planted_link' and modality == 'image'").iloc[0]
    assert not image["required"] and not image["passed"]


def test_a_cohort_that_is_not_the_finding_does_not_count() -> None:
    # image's best cohort shares only 8 of 20 + 12 studies: Jaccard 0.25 < MIN_JACCARD
    half = CIRRHOSIS[:8] + STUDIES[20:32]
    table, ok = _run(_assoc(GOOD), exposed={"image": _exposed(half), "report": _exposed()})
    row = table.query("role == 'planted_link' and modality == 'image'").iloc[0]
    assert row["jaccard"] == pytest.approx(8 / 32) and row["jaccard"] < MIN_JACCARD and row["rank"] == 1
    assert not row["passed"] and not ok


def test_confounded_finding_ranking_anywhere_fails() -> None:
    assert not _run(_assoc({**GOOD, ("report", 1, "heart_failure"): 2}))[1]
    assert _run(_assoc({**GOOD, ("report", 1, "heart_failure"): 4}))[1]  # beyond max_rank: allowed


def test_no_link_checked_fails() -> None:
    truth = _truth()
    truth["findings"]["cirrhosis"]["modalities"] = ["ultrasound"]  # no exposed modality carries it
    assert not _run(_assoc(GOOD), truth=truth)[1]
