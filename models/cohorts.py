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
    """
    return unit_stats_and_cohorts(activations, study_ids, np.arange(n_features), cfg, "feature")


def unit_stats_and_cohorts(
    activations: pd.DataFrame, study_ids: np.ndarray, ids: np.ndarray, cfg: CohortConfig, unit: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """feature_stats_and_cohorts for the units `ids` (features, or families by their
    parent's id) whose activations are in `activations` (feature_id = the unit's id)."""
    n = len(study_ids)
    act = activations[activations["value"] > 0]
    groups = dict(tuple(act.groupby("feature_id", sort=True)))
    silent = act.iloc[0:0]  # a unit that never fires has no rows
    stats, cohorts = [], []
    for f in (int(i) for i in ids):
        g = groups.get(f, silent)
        vals = g["value"].to_numpy(np.float64)
        thr = percentile_with_zeros(vals, n, cfg.percentile)
        exposed = g[g["value"] >= thr]
        size = len(exposed)
        flag = _testability_flag(len(vals), size, n, cfg)
        stats.append(
            {
                "unit": unit,
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
        )
        if size:
            cohorts.append(_roles(f, exposed, study_ids, g, cfg))
    stats_df = pd.DataFrame(stats, columns=_STATS_COLUMNS)
    cohort_df = pd.concat(cohorts, ignore_index=True) if cohorts else _empty_cohorts()
    return stats_df, cohort_df.assign(unit=unit)[["unit", *cohort_df.columns]]


_STATS_COLUMNS = ["unit", "feature_id", "n_studies", "n_active", "frac_active", "mean_active", "max_value",
                  "threshold", "cohort_size", "testable", "flag"]


def _testability_flag(n_active: int, size: int, n: int, cfg: CohortConfig) -> str | None:
    if n_active == 0:
        return "dead: never fires"
    if size < cfg.min_cohort_size:
        return f"cohort too small ({size} < {cfg.min_cohort_size})"
    if size >= n:
        return "fires on every study: no controls"
    return None


def _roles(
    f: int, exposed: pd.DataFrame, study_ids: np.ndarray, active: pd.DataFrame, cfg: CohortConfig
) -> pd.DataFrame:
    exp = exposed.sort_values(["value", "study_id"], ascending=[False, True])
    rows = [
        pd.DataFrame(
            {
                "feature_id": f,
                "study_id": exp["study_id"].to_numpy(),
                "role": "exposed",
                "value": exp["value"].to_numpy(np.float32),
                "rank": np.arange(1, len(exp) + 1, dtype=np.int32),
            }
        )
    ]
    silent = np.setdiff1d(study_ids, active["study_id"].to_numpy())
    if cfg.control_sample_size and len(silent):
        rng = np.random.default_rng([cfg.seed, f])
        pick = rng.choice(len(silent), size=min(cfg.control_sample_size, len(silent)), replace=False)
        ctrl = silent[np.sort(pick)]
        rows.append(
            pd.DataFrame(
                {
                    "feature_id": f,
                    "study_id": ctrl,
                    "role": "control",
                    "value": np.zeros(len(ctrl), np.float32),
                    "rank": np.arange(1, len(ctrl) + 1, dtype=np.int32),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


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
