"""Per-feature activation statistics and top-percentile cohorts.

The exposed cohort of a feature is the seed's "top 90th percentile" rule: studies whose
activation is above zero and at or above the feature's `percentile` over *all* studies
(zeros included). A feature that fires on fewer than (100 - percentile)% of studies keeps
every study it fires on. Controls are studies where the feature does not fire at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import CohortConfig


def percentile_with_zeros(active: np.ndarray, n_total: int, q: float) -> float:
    """`np.percentile(full, q)` (linear interpolation) of a vector made of `active` values
    and `n_total - len(active)` zeros, without materialising the zeros."""
    m = len(active)
    if n_total <= 0:
        return float("nan")
    if m > n_total:
        raise ValueError(f"{m} active values for {n_total} studies")
    vals = np.sort(np.asarray(active, dtype=np.float64))
    n_zero = n_total - m
    pos = q / 100.0 * (n_total - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))

    def at(i: int) -> float:
        return 0.0 if i < n_zero else float(vals[i - n_zero])

    return at(lo) + (at(hi) - at(lo)) * (pos - lo)


def feature_stats_and_cohorts(
    activations: pd.DataFrame, study_ids: np.ndarray, n_features: int, cfg: CohortConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (FEATURE_STATS frame, COHORTS frame) from sparse long-form activations.

    `activations` has columns study_id, feature_id, value (> 0 rows only matter);
    `study_ids` lists every study that was encoded (the percentile denominator).

    Cost: one stable sort of the active rows by feature, then per feature only its own
    rows; a feature's controls are drawn by position among the studies where it is
    silent, never by materialising that set (8,192 features x 200,000 studies would be
    1.6 G comparisons)."""
    return unit_stats_and_cohorts(activations, study_ids, np.arange(n_features), cfg, "feature")


def unit_stats_and_cohorts(
    activations: pd.DataFrame, study_ids: np.ndarray, ids: np.ndarray, cfg: CohortConfig, unit: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """feature_stats_and_cohorts for the units `ids` (features, or families by their
    parent's id) whose activations are in `activations` (feature_id = the unit's id)."""
    n = len(study_ids)
    act = activations[activations["value"] > 0]
    feat = act["feature_id"].to_numpy(np.int64)
    order = np.argsort(feat, kind="stable")  # within a feature: the rows' own order
    ids = np.asarray(ids, np.int64)
    lo, hi = np.searchsorted(feat[order], ids, "left"), np.searchsorted(feat[order], ids, "right")
    values = act["value"].to_numpy()[order]
    sids = act["study_id"].to_numpy()[order]
    universe = np.unique(np.asarray(study_ids))  # sorted, as np.setdiff1d returns the silent ones
    at = np.searchsorted(universe, sids)
    at = np.where((at < len(universe)) & (universe[np.minimum(at, len(universe) - 1)] == sids), at, -1)
    stats, parts = [], []
    for f, a, b in zip(ids.tolist(), lo.tolist(), hi.tolist(), strict=True):
        rows = slice(a, b)
        stat, part = _feature(f, values[rows], sids[rows], at[rows], universe, n, cfg)
        stats.append({"unit": unit, **stat})
        if part is not None:
            parts.append(part)
    stats_df = pd.DataFrame(stats, columns=_STATS_COLUMNS)
    if not parts:
        empty = _empty_cohorts()
        return stats_df, empty.assign(unit=unit)[["unit", *empty.columns]]
    cols = list(zip(*parts, strict=True))
    cohort_df = pd.DataFrame({
        "unit": unit, "feature_id": np.concatenate(cols[0]), "study_id": np.concatenate(cols[1]),
        "role": np.concatenate(cols[2]), "value": np.concatenate(cols[3]), "rank": np.concatenate(cols[4])})
    return stats_df, cohort_df


_STATS_COLUMNS = ["unit", "feature_id", "n_studies", "n_active", "frac_active", "mean_active", "max_value",
                  "threshold", "cohort_size", "testable", "flag"]


def _feature(f: int, v: np.ndarray, sid: np.ndarray, at: np.ndarray, universe: np.ndarray, n: int,
             cfg: CohortConfig) -> tuple[dict, tuple[np.ndarray, ...] | None]:
    """One feature's FEATURE_STATS row and its cohort rows (columns as arrays) or None."""
    vals = v.astype(np.float64)
    thr = percentile_with_zeros(vals, n, cfg.percentile)
    hit = v >= thr  # in the column's own dtype, as a comparison of the frame column would be
    size = int(hit.sum())
    flag = _testability_flag(len(vals), size, n, cfg)
    stat = {
        "feature_id": f,
        "n_studies": n,
        "n_active": len(vals),
        "frac_active": len(vals) / n if n else 0.0,
        "mean_active": float(vals.mean()) if len(vals) else None,
        "max_value": float(vals.max()) if len(vals) else None,
        "threshold": max(thr, 0.0) if len(vals) else None,
        "cohort_size": size,
        "testable": flag is None,
        "flag": flag,
    }
    if not size:
        return stat, None
    ev, es = v[hit], sid[hit]
    rank = np.lexsort((es, -ev))  # value descending, then study id
    ctrl = _controls(f, at, universe, cfg)
    ids = np.concatenate([es[rank], ctrl]) if len(ctrl) else es[rank]
    m, c = len(rank), len(ctrl)
    return stat, (np.full(m + c, f, np.int64), ids, np.array(["exposed"] * m + ["control"] * c, dtype=object),
                  np.concatenate([ev[rank].astype(np.float32), np.zeros(c, np.float32)]),
                  np.concatenate([np.arange(1, m + 1, dtype=np.int32), np.arange(1, c + 1, dtype=np.int32)]))


def _testability_flag(n_active: int, size: int, n: int, cfg: CohortConfig) -> str | None:
    if n_active == 0:
        return "dead: never fires"
    if size < cfg.min_cohort_size:
        return f"cohort too small ({size} < {cfg.min_cohort_size})"
    if size >= n:
        return "fires on every study: no controls"
    return None


def _controls(f: int, at: np.ndarray, universe: np.ndarray, cfg: CohortConfig) -> np.ndarray:
    """A seeded sample of the studies where the feature is silent, in study order. The
    j-th silent study is universe[j + #active positions <= it]: with the active positions
    p sorted, that count is searchsorted(p - arange, j, 'right')."""
    active = np.unique(at[at >= 0])
    n_silent = len(universe) - len(active)
    if not cfg.control_sample_size or n_silent <= 0:
        return universe[:0]
    rng = np.random.default_rng([cfg.seed, f])
    pick = np.sort(rng.choice(n_silent, size=min(cfg.control_sample_size, n_silent), replace=False))
    return universe[pick + np.searchsorted(active - np.arange(len(active)), pick, side="right")]


def _empty_cohorts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature_id": pd.Series(dtype=np.int32),
            "study_id": pd.Series(dtype=object),
            "role": pd.Series(dtype=object),
            "value": pd.Series(dtype=np.float32),
            "rank": pd.Series(dtype=np.int32),
        }
    )


def sparse_activations(study_ids: np.ndarray, vals: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
    """Long form (study_id, feature_id, value) of TopK codes, dropping zero entries."""
    rows = np.repeat(np.arange(len(study_ids)), vals.shape[1])
    v, i = vals.reshape(-1), idx.reshape(-1)
    keep = v > 0
    df = pd.DataFrame(
        {
            "study_id": np.asarray(study_ids)[rows[keep]],
            "feature_id": i[keep].astype(np.int32),
            "value": v[keep].astype(np.float32),
        }
    )
    return df.sort_values(["study_id", "feature_id"], ignore_index=True)
