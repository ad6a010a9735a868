"""Multiple testing, ranking and replication (models/stats/ranking.py, exact.py selection):
families, Holm vs BH replication, the exact-fit cap, the score-only estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from statsmodels.stats.multitest import multipletests

from data_contracts.config import AssociationConfig
from models.stats.exact import BEYOND_CAP
from models.stats.ranking import add_multiplicity, replication
from models.stats.screen import bh_qvalues, holm
from tests.models.stats.test_association import _run


def test_holm_and_bh_match_statsmodels() -> None:
    p = np.random.default_rng(0).uniform(size=40) ** 3
    p[[3, 17]] = np.nan
    ok = ~np.isnan(p)
    np.testing.assert_allclose(holm(p)[ok], multipletests(p[ok], method="holm")[1], rtol=1e-12)
    np.testing.assert_allclose(bh_qvalues(p)[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)
    assert np.isnan(holm(p)[[3, 17]]).all()


def test_fdr_family_per_modality_and_outcome() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"modality": np.repeat(["image", "report"], 20), "outcome_id": np.tile(["a", "b"], 20),
                       "feature_id": np.arange(40), "p_value": rng.uniform(size=40) ** 2,
                       "score_p": rng.uniform(size=40) ** 2})
    pooled = add_multiplicity(df, "split")
    np.testing.assert_allclose(pooled["q_value"], multipletests(df["p_value"], method="fdr_bh")[1])
    per = add_multiplicity(df, "modality_outcome")
    for _, g in per.groupby(["modality", "outcome_id"]):
        np.testing.assert_allclose(g["score_q"], multipletests(g["score_p"], method="fdr_bh")[1])
        np.testing.assert_allclose(g["q_value"], multipletests(g["p_value"], method="fdr_bh")[1])
        np.testing.assert_allclose(g["p_bonferroni"], np.minimum(1, g["p_value"] * len(g)))


def _two_ranked(p_val: tuple[float, float]) -> pd.DataFrame:
    key = {"modality": "report", "outcome_id": "o"}
    disc = [{**key, "feature_id": f, "split": "discovery", "rank": r, "adj_log_or": 1.0, "adj_p_value": 1e-6}
            for f, r in ((0, 1), (1, 2))]
    val = [{**key, "feature_id": f, "split": "validation", "rank": None, "adj_log_or": 0.8, "adj_p_value": p}
           for f, p in zip((0, 1), p_val, strict=True)]
    out = pd.DataFrame(disc + val)
    out["rank"] = out["rank"].astype("Int32")
    return out


def test_replication_holm_versus_bh_within_modality_and_outcome() -> None:
    df = _two_ranked((0.03, 0.04))
    h = replication(df, AssociationConfig())  # Holm: 0.06, 0.06
    assert not h["replicated"].any() and h["replication_p_adj"].tolist() == pytest.approx([0.06] * 4)
    b = replication(df, AssociationConfig(replication_method="bh"))  # BH: 0.04, 0.04
    assert b["replicated"].all() and b["replication_p_adj"].tolist() == pytest.approx([0.04] * 4)
    opposite = df.assign(adj_log_or=np.where(df["split"] == "validation", -0.8, 1.0))
    assert not replication(opposite, AssociationConfig(replication_method="bh"))["replicated"].any()


def test_exact_fit_cap_flags_and_leaves_unranked() -> None:
    res, *_ = _run(AssociationConfig(min_exposed_cases=1))
    full = res[res["rank"].notna()]
    assert len(full) >= 2
    capped, *_ = _run(AssociationConfig(min_exposed_cases=1, exact_top_m=1))
    disc = capped[capped["split"] == "discovery"]
    assert disc.groupby("outcome_id")["rank"].count().max() == 1
    left = disc[disc["flag"].fillna("").str.contains(BEYOND_CAP)]
    assert len(left) and left["rank"].isna().all() and left["adj_log_or"].isna().all()


def test_score_only_estimator_ranks_by_score_p() -> None:
    res, *_ = _run(AssociationConfig(rank_estimator="score", rank_key="adj_p_value", min_exposed_cases=1))
    ranked = res[res["rank"].notna()]
    assert len(ranked) and set(ranked["adj_method"]) == {"score one-step"}
    assert (ranked["adj_p_value"] == ranked["score_p"]).all()
    for _, g in ranked.groupby("outcome_id"):
        assert g.sort_values("rank")["score_p"].is_monotonic_increasing
    with pytest.raises(ValidationError, match="rank_key"):
        AssociationConfig(rank_estimator="score")
    with pytest.raises(ValidationError, match="firth"):
        AssociationConfig(rank_estimator="score", rank_key="adj_p_value", firth=True)
    with pytest.raises(ValidationError, match="exact_top_m"):
        AssociationConfig(exact_select="top")
