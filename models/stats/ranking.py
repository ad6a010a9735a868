"""Multiple-testing correction, ranking and replication across associations rows.

- q_value / p_bonferroni: BH and Bonferroni over the Fisher p of every test in a family;
  score_q: BH over the adjusted score-test p of every test in a family. The family is the
  split ("split": all modalities and outcomes pooled) or (split, modality, outcome).
- Rank (discovery split only, per modality and outcome): pairs that may rank (score_q <
  alpha, at least `min_exposed_cases` exposed cases) with a finite adjusted estimate from
  the configured estimator, ordered by the configured key (default: lower 95% bound of the
  adjusted OR, largest first; ties by p then feature id). "rank r of n tested": n_tested
  counts the pairs with a score-test p.
  With a `rankable` column only those rows rank and count: the findings (feature
  families and features in no family); a family's members are tested and counted in BH,
  but are parts of a finding, not findings of their own.
- replicated (every row of a ranked pair): the validation split's adjusted log-OR has the
  discovery sign and its p, Holm- or BH-corrected over the pairs ranked for the same
  (modality, outcome) (replication_p_adj), is below `replication_p`; a ranked pair with no
  validation estimate counts in the family with p = 1. Null for pairs not ranked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import AssociationConfig
from models.outcomes.split import DISCOVERY, VALIDATION
from models.stats.screen import bh_qvalues, bonferroni, holm

KEY = ["modality", "feature_id", "outcome_id"]
GROUPS = ["split", "modality", "outcome_id"]
_ASCENDING = {"adj_or_ci_low": False, "adj_odds_ratio": False, "adj_p_value": True, "or_ci_low": False}


def add_multiplicity(df: pd.DataFrame, family: str = "split") -> pd.DataFrame:
    """BH and Bonferroni within each family of one split's tests (see module doc)."""
    p, score = df["p_value"].to_numpy(np.float64), df["score_p"].to_numpy(np.float64)
    q, bonf, sq = np.full(len(df), np.nan), np.full(len(df), np.nan), np.full(len(df), np.nan)
    groups = [np.arange(len(df))] if family == "split" else list(
        df.reset_index(drop=True).groupby(["modality", "outcome_id"], sort=False).indices.values())
    for idx in groups:
        q[idx], bonf[idx], sq[idx] = bh_qvalues(p[idx]), bonferroni(p[idx]), bh_qvalues(score[idx])
    return df.assign(q_value=q, p_bonferroni=bonf, score_q=sq)


def rank_discovery(df: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """rank / n_ranked / n_tested per (split, modality, outcome); ranks only in discovery."""
    out = df.reset_index(drop=True)
    rankable = out["rankable"].to_numpy(bool) if "rankable" in out.columns else np.ones(len(out), bool)
    out["n_tested"] = out["score_p"].where(rankable).groupby([out[g] for g in GROUPS]).transform("count")
    out["n_tested"] = out["n_tested"].astype("int32")
    key = cfg.rank_key
    ok = (rankable & (out["split"] == DISCOVERY) & (out["score_q"] < cfg.alpha)
          & (out["n_exposed_cases"] >= cfg.min_exposed_cases) & np.isfinite(out["adj_log_or"])
          & out[key].notna())
    ranked = out[ok].sort_values([key, "adj_p_value", "feature_id"],
                                 ascending=[_ASCENDING[key], True, True], kind="mergesort")
    rank = ranked.groupby(GROUPS, sort=False).cumcount() + 1
    out["rank"] = pd.array([pd.NA] * len(out), dtype="Int32")
    out.loc[rank.index, "rank"] = rank.to_numpy()
    counts = out[ok].groupby(GROUPS).size()
    idx = pd.MultiIndex.from_frame(out[GROUPS])
    out["n_ranked"] = counts.reindex(idx).fillna(0).to_numpy().astype("int32")
    return out


def replication(df: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """Add `replication_p_adj` and `replicated` to every row of each pair ranked in discovery."""
    disc = df[(df["split"] == DISCOVERY) & df["rank"].notna()].set_index(KEY)
    v = df[df["split"] == VALIDATION].set_index(KEY).reindex(disc.index)
    p = v["adj_p_value"].fillna(1.0).to_numpy()
    adj = np.full(len(p), np.nan)
    correct = holm if cfg.replication_method == "holm" else bh_qvalues
    for idx in disc.reset_index().groupby(["modality", "outcome_id"], sort=False).indices.values():
        adj[idx] = correct(p[idx])
    p_adj = pd.Series(adj, index=disc.index)
    same_sign = np.sign(v["adj_log_or"]) == np.sign(disc["adj_log_or"])
    rep = same_sign & (p_adj < cfg.replication_p)
    out = df.copy()
    keys = pd.MultiIndex.from_frame(out[KEY])
    out["replication_p_adj"] = p_adj.reindex(keys).to_numpy(np.float64)
    out["replicated"] = pd.array(rep.reindex(keys).to_numpy(), dtype="boolean")
    return out
