"""Feature x outcome associations: screen every pair, confirm the ones that pass.

Per split (discovery, validation; patients never in both) and per modality, over the
eligible studies the modality encoded; under binary_controls 'complete_followup' (the
default) event-free studies lost to follow-up before the window's end are left out and
counted (n_excluded_followup, n_exposed_excluded_followup):
1. crude screen of every pair: 2x2 counts, P(outcome | cohort) vs baseline, odds ratio
   (Haldane +0.5 only for tables with a zero cell) with Woolf CI, two-sided Fisher p;
2. age+sex-adjusted score test of every pair (models/stats/score_test.py);
3. BH q and Bonferroni within each family: the split, or (split, modality, outcome);
4. the adjusted estimate of one estimator for every pair that may rank: exact adjusted
   logistic fits (outcome ~ cohort + age + sex; Firth as an option) of the pairs selected
   in discovery, fitted in both splits (models/stats/exact.py), or the score test alone; as
   an option also outcome ~ standardised activation + age + sex, OR per SD
   (models/stats/activation_sd.py);
5. rank and replication (models/stats/ranking.py).
Pairs below the minimum counts, outcomes without cases and the like are flagged in the
row, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data_contracts.config import AssociationConfig
from models.outcomes.split import DISCOVERY, VALIDATION
from models.stats.activation_sd import fit_per_sd, study_feature_matrix
from models.stats.exact import BEYOND_CAP, adjusted_columns, fit_pairs, rankable, select_pairs
from models.stats.exact import COLUMNS as EXACT_COLUMNS
from models.stats.ranking import KEY, add_multiplicity, rank_discovery, replication
from models.stats.score_test import covariate_design, score_test
from models.stats.screen import Z95, fisher_exact_2sided, odds_ratio_woolf, two_by_two


@dataclass(frozen=True)
class OutcomeMatrices:
    """Labels as (studies x outcomes) arrays; one row per labelled study."""

    study_ids: np.ndarray
    subject_ids: np.ndarray
    outcome_ids: list[str]
    Y: np.ndarray  # event, bool
    M: np.ndarray  # eligible, bool
    T: np.ndarray  # time_days, float
    age: np.ndarray  # years at index, NaN when birth is unknown
    male: np.ndarray  # 1 / 0, NaN when sex is unknown
    C: np.ndarray | None = None  # follow-up ended by death (competing event), bool; None: none
    complete: np.ndarray | None = None  # outcome status known for the whole window; None: all

    @property
    def competing(self) -> np.ndarray:
        return self.C if self.C is not None else np.zeros_like(self.Y)

    def binary_rows(self, cfg: AssociationConfig) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the binary analyses, eligible rows they leave out for short follow-up):
        under binary_controls 'complete_followup' an eligible event-free study must have
        its outcome status known for the whole window."""
        if self.complete is None or cfg.binary_controls == "all":
            return self.M, np.zeros_like(self.M)
        short = self.M & ~self.complete
        return self.M & ~short, short

    @property
    def has_covariates(self) -> np.ndarray:
        return np.isfinite(self.age) & np.isfinite(self.male)

    @cached_property  # built once: every split, modality and fit of a run reuses it
    def design(self) -> np.ndarray:
        return covariate_design(self.age, self.male)


def outcome_matrices(labels: pd.DataFrame) -> OutcomeMatrices:
    """Pivot OUTCOME_LABELS rows into dense per-study arrays."""
    return matrices_from_parts(labels.drop_duplicates("study_id"), labels["outcome_id"].unique(), [labels])


def matrices_from_parts(studies: pd.DataFrame, outcome_ids: Iterable[str], parts: Iterable[pd.DataFrame]
                        ) -> OutcomeMatrices:
    """`outcome_matrices` from label rows that arrive in parts (e.g. parquet batches, so
    60 M rows are never one frame). `studies`: each study's first label row (its patient,
    age and sex); `outcome_ids`: every outcome in the parts. Columns may be categorical."""
    studies = studies.assign(study_id=np.asarray(studies["study_id"], dtype=object)).sort_values("study_id")
    sid = pd.Index(studies["study_id"])
    outcomes = sorted(str(o) for o in outcome_ids)
    o_index = pd.Index(outcomes)
    shape = (len(sid), len(outcomes))
    Y, M, T = np.zeros(shape, bool), np.zeros(shape, bool), np.full(shape, np.nan)
    C, K = np.zeros(shape, bool), np.ones(shape, bool)
    for part in parts:
        r, c = _positions(sid, part["study_id"]), _positions(o_index, part["outcome_id"])
        Y[r, c] = part["event"].to_numpy(bool)
        M[r, c] = part["eligible"].to_numpy(bool)
        T[r, c] = pd.to_numeric(part["time_days"], errors="coerce").to_numpy(np.float64)
        if "competing_event" in part.columns:  # labels written before contract 3 have none
            C[r, c] = part["competing_event"].eq(True).to_numpy(bool)
        if "complete_followup" in part.columns:
            K[r, c] = ~part["complete_followup"].eq(False).to_numpy(bool)  # unknown: complete
    age = pd.to_numeric(studies["age_years"], errors="coerce").to_numpy(np.float64)
    male = studies["sex"].astype(object).map({"M": 1.0, "F": 0.0}).astype(float).to_numpy()
    return OutcomeMatrices(sid.to_numpy(), studies["subject_id"].to_numpy(), outcomes, Y, M, T, age, male, C, K)


def _positions(index: pd.Index, values: pd.Series) -> np.ndarray:
    """index.get_indexer(values); a categorical column is looked up once per category."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        found = index.get_indexer(pd.Index(np.asarray(values.cat.categories, dtype=object)))
        return np.where(codes >= 0, found[codes], -1)
    return index.get_indexer(pd.Index(values))


def exposure_matrix(exposed: pd.DataFrame, study_ids: np.ndarray, n_features: int) -> sp.csc_matrix:
    """Binary (studies x features) matrix from exposed cohort rows (feature_id, study_id)."""
    E = study_feature_matrix(exposed, np.ones(len(exposed), dtype=np.float64), study_ids, n_features)
    E.data[:] = 1.0  # duplicate rows must not count twice
    return E


def screen_arrays(E: sp.spmatrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, cov_ok: np.ndarray,
                  short: np.ndarray | None = None) -> dict:
    """Crude 2x2 statistics and the adjusted score test of every pair, (features x
    outcomes) arrays. M is the eligibility of this analysis (e.g. one split). Also the
    per-outcome null coefficients and null-fit moments the exact fits reuse,
    and the rows of the adjusted analysis ("adjusted_rows": M and covariates known).
    `short`: eligible rows of the same analysis left out for short follow-up (counted)."""
    a, n1, cases, n = two_by_two(E, Y, M)
    short = np.zeros_like(M) if short is None else short
    n_short = np.broadcast_to(short.sum(axis=0), a.shape)
    n1_short = np.asarray(E.T @ short.astype(np.float64)).astype(np.int64)
    b, c = n1 - a, cases - a
    d = n - n1 - c
    or_, lo, hi, corrected = odds_ratio_woolf(a, b, c, d)
    informative = (n1 > 0) & (n1 < n) & (cases > 0) & (cases < n)
    p = np.full(a.shape, np.nan)
    p[informative] = fisher_exact_2sided(a[informative], n1[informative], cases[informative], n[informative])
    adj = M & cov_ok[:, None]
    score = score_test(E, Z, Y, adj, with_moments=True)
    return {"a": a, "n1": n1, "cases": cases, "n": n, "b": b, "c": c, "d": d,
            "odds_ratio": or_, "or_ci_low": lo, "or_ci_high": hi, "corrected": corrected,
            "informative": informative, "p_value": p, "score_p": score.p, "score_log_or": score.log_or,
            "score_se": score.se, "null_ok": np.broadcast_to(score.null_ok, a.shape),
            "null_params": score.null_params, "moments": score.moments,
            "n_adjusted": np.broadcast_to(adj.sum(axis=0), a.shape), "adjusted_rows": adj,
            "n_short": n_short, "n1_short": n1_short}


def screen_frame(arr: dict, testable: np.ndarray, outcome_ids: list[str], cfg: AssociationConfig) -> pd.DataFrame:
    """Long form, one row per (outcome, feature), outcome-major."""
    n_f, n_o = arr["a"].shape

    def flat(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x).T).ravel()

    f = {k: flat(v) for k, v in arr.items() if k not in ("null_params", "moments", "adjusted_rows")}
    test = np.tile(testable, n_o)
    tested = test & f["informative"]
    with np.errstate(divide="ignore", invalid="ignore"):
        df = pd.DataFrame({
            "feature_id": np.tile(np.arange(n_f, dtype=np.int32), n_o),
            "outcome_id": np.repeat(np.asarray(outcome_ids, dtype=object), n_f),
            "n_exposed": f["n1"].astype(np.int64), "n_exposed_cases": f["a"].astype(np.int64),
            "n_unexposed": (f["n"] - f["n1"]).astype(np.int64), "n_unexposed_cases": f["c"].astype(np.int64),
            "p_outcome_exposed": np.where(f["n1"] > 0, f["a"] / f["n1"], np.nan),
            "p_outcome_baseline": np.where(f["n"] > 0, f["cases"] / f["n"], np.nan),
            "odds_ratio": np.where(tested, f["odds_ratio"], np.nan),
            "or_ci_low": np.where(tested, f["or_ci_low"], np.nan),
            "or_ci_high": np.where(tested, f["or_ci_high"], np.nan),
            "p_value": np.where(tested, f["p_value"], np.nan),
            "n_adjusted": f["n_adjusted"].astype(np.int64),
            "n_excluded_followup": f["n_short"].astype(np.int64),
            "n_exposed_excluded_followup": f["n1_short"].astype(np.int64),
            "score_p": np.where(test, f["score_p"], np.nan),
            "score_log_or": np.where(test, f["score_log_or"], np.nan),
            "score_se": np.where(test, f["score_se"], np.nan),
        })
    df["flag"] = _flags(f, test, tested, cfg)
    return df


def _flags(f: dict, test: np.ndarray, tested: np.ndarray, cfg: AssociationConfig) -> np.ndarray:
    n, n1, a, cases = f["n"], f["n1"], f["a"], f["cases"]
    min_cell = np.minimum.reduce([a, f["b"], f["c"], f["d"]])
    rules = [
        (~test, "feature not testable"),
        (n == 0, "no eligible studies"),
        ((cases == 0) & (n > 0), "outcome has no cases"),
        ((cases == n) & (n > 0), "every eligible study is a case"),
        ((n1 == 0) & (n > 0), "cohort has no eligible studies"),
        ((a == 0) & (n1 > 0), "cohort has no cases"),
        ((n1 >= n) & (n > 0), "all studies exposed"),
        (a < cfg.min_exposed_cases, f"exposed cases < {cfg.min_exposed_cases}"),
        (min_cell < cfg.min_cell_count, f"2x2 cell < {cfg.min_cell_count}"),
        (f["corrected"] & tested, "zero cell: Haldane correction"),
        (f["n_adjusted"] < n, "studies without age/sex left out of adjusted models"),
        (test & ~f["null_ok"] & (n > 0), "adjusted null model not estimable"),
    ]
    out = np.full(len(n), "", dtype=object)
    for mask, text in rules:
        out = np.where(mask, out + text + "; ", out)
    out = np.array([s[:-2] if s else None for s in out], dtype=object)
    return out


def associate_splits(
    exposures: dict[str, tuple[sp.spmatrix, np.ndarray, np.ndarray]],
    om: OutcomeMatrices,
    split: np.ndarray,
    cfg: AssociationConfig,
    activations: dict[str, sp.spmatrix] | None = None,
    rankable: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Every pair of every modality in both splits (ASSOCIATIONS rows, unsorted).

    `exposures`: modality -> (E over om.study_ids, testable per feature, the studies the
    modality encoded); `split`: the split of each study. BH and Bonferroni run over every
    test of a split; exact fits are chosen in discovery and made in both splits.
    `activations` (modality -> studies x features values over om.study_ids) is needed
    with cfg.or_per_sd. `rankable` (modality -> per column): which columns may rank
    (models/stats/ranking.py); all when None."""
    if cfg.or_per_sd and (activations is None or set(activations) != set(exposures)):
        raise ValueError("or_per_sd needs an activation matrix for every modality")
    Z, cov_ok = om.design, om.has_covariates
    M, short = om.binary_rows(cfg)
    frames, selected = [], None
    for name in (DISCOVERY, VALIDATION):
        in_split = (split == name)[:, None]
        parts, adj = [], {}
        for mod, (E, testable, encoded) in sorted(exposures.items()):
            rows = in_split & encoded[:, None]
            arr = screen_arrays(E, Z, om.Y, M & rows, cov_ok, short & rows)
            adj[mod] = (E, arr["adjusted_rows"], (arr["null_params"], arr["moments"]))
            part = screen_frame(arr, testable, om.outcome_ids, cfg).assign(modality=mod)
            if rankable is not None:
                part["rankable"] = rankable[mod][part["feature_id"].to_numpy()]
            parts.append(part)
        df = add_multiplicity(pd.concat(parts, ignore_index=True), cfg.fdr_family).assign(split=name)
        if selected is None:
            selected = select_pairs(df, cfg)
        df = _with_exact(df, selected, adj, om, cfg)
        frames.append(_with_per_sd(df, selected, adj, activations or {}, om) if cfg.or_per_sd else _no_per_sd(df))
    out = rank_discovery(pd.concat(frames, ignore_index=True), cfg)
    return replication(out, cfg).drop(columns=["rankable"], errors="ignore")


def _with_exact(df: pd.DataFrame, selected: pd.DataFrame, adj: dict, om: OutcomeMatrices,
                cfg: AssociationConfig) -> pd.DataFrame:
    """Exact fits of the selected pairs (none under rank_estimator "score"); adj: modality ->
    (E, rows of the adjusted analysis per outcome, (null coefficients, null-fit moments)
    per outcome). Pairs that may rank but were left out by the exact_top_m cap are flagged."""
    fits = []
    o_index = pd.Index(om.outcome_ids)
    todo = selected if cfg.rank_estimator == "exact" else selected.iloc[0:0]
    for mod, sel in todo.groupby("modality"):
        E, M_adj, (nulls, moms) = adj[str(mod)]
        o = o_index.get_indexer(pd.Index(sel["outcome_id"]))
        pairs = np.column_stack([sel["feature_id"].to_numpy(int), o])
        res = fit_pairs(E, om.design, om.Y, M_adj, pairs, cfg.firth, nulls[o], moms)
        fits.append(pd.concat([sel[KEY].reset_index(drop=True), res], axis=1))
    cols = [*KEY, *EXACT_COLUMNS]
    fit = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame(columns=cols)
    merged = df.merge(fit[cols], on=KEY, how="left")
    num = [c for c in EXACT_COLUMNS if c != "exact_flag"]
    merged[num] = merged[num].astype(np.float64)  # object dtype when no pair was fitted
    if cfg.rank_estimator == "exact":
        fitted = merged.set_index(KEY).index.isin(selected.set_index(KEY).index)
        left_out = (merged["split"] == DISCOVERY).to_numpy() & rankable(merged, cfg).to_numpy() & ~fitted
        merged.loc[left_out, "exact_flag"] = BEYOND_CAP
    merged["flag"] = _join_flags(merged["flag"], merged["exact_flag"])
    return adjusted_columns(merged, cfg).drop(columns=["exact_flag"])


def _with_per_sd(df: pd.DataFrame, selected: pd.DataFrame, adj: dict,
                 activations: dict[str, sp.spmatrix], om: OutcomeMatrices) -> pd.DataFrame:
    """OR per SD of the activation for the pairs selected for exact fits, on the rows of
    the same adjusted analysis; other pairs get NaN."""
    fits = []
    o_index = pd.Index(om.outcome_ids)
    for mod, sel in selected.groupby("modality"):
        _, M_adj, (nulls, _) = adj[str(mod)]
        o = o_index.get_indexer(pd.Index(sel["outcome_id"]))
        pairs = np.column_stack([sel["feature_id"].to_numpy(int), o])
        res = fit_per_sd(activations[str(mod)], om.design, om.Y, M_adj, pairs, nulls[o])
        fits.append(pd.concat([sel[KEY].reset_index(drop=True), res], axis=1))
    if not fits:
        return _no_per_sd(df)
    m = df.merge(pd.concat(fits, ignore_index=True), on=KEY, how="left")
    b, se = m["sd_log_or"].astype(np.float64), m["sd_se"].astype(np.float64)
    return m.assign(sd_odds_ratio=np.exp(b), sd_ci_low=np.exp(b - Z95 * se), sd_ci_high=np.exp(b + Z95 * se),
                    sd_p_value=m["sd_p_value"].astype(np.float64)).drop(columns=["sd_log_or", "sd_se"])


def _no_per_sd(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(sd_odds_ratio=np.nan, sd_ci_low=np.nan, sd_ci_high=np.nan, sd_p_value=np.nan, sd_flag=None)


def _join_flags(a: pd.Series, b: pd.Series) -> pd.Series:
    both = a.fillna("").str.cat(b.fillna(""), sep="; ").str.strip("; ")
    return both.where(both != "")
