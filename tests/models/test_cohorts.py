from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import CohortConfig
from models.cohorts import feature_stats_and_cohorts, percentile_with_zeros, sparse_activations, unit_stats_and_cohorts


@pytest.mark.parametrize("m,n,q", [(0, 10, 90), (3, 10, 90), (9, 10, 90), (10, 10, 90), (57, 200, 90), (5, 7, 50)])
def test_percentile_with_zeros_matches_numpy(m: int, n: int, q: float) -> None:
    rng = np.random.default_rng(m * 31 + n)
    active = rng.uniform(0.1, 3, size=m)
    full = np.concatenate([np.zeros(n - m), active])
    assert percentile_with_zeros(active, n, q) == pytest.approx(np.percentile(full, q), abs=1e-12)


def test_top_percentile_rule() -> None:
    ids = np.array([f"s{i:03d}" for i in range(100)])
    rng = np.random.default_rng(0)
    # feature 0 fires on 50 studies: cohort = the top 10 of all 100
    # feature 1 fires on 6 studies (<10%): cohort = all 6
    f0 = pd.DataFrame({"study_id": ids[:50], "feature_id": 0, "value": rng.uniform(1, 2, 50)})
    f1 = pd.DataFrame({"study_id": ids[50:56], "feature_id": 1, "value": rng.uniform(1, 2, 6)})
    acts = pd.concat([f0, f1], ignore_index=True)
    stats, coh = feature_stats_and_cohorts(acts, ids, 3, CohortConfig(min_cohort_size=5, control_sample_size=20))
    exp = coh[coh.role == "exposed"]
    top10 = set(f0.nlargest(10, "value")["study_id"])
    assert set(exp[exp.feature_id == 0].study_id) == top10
    assert set(exp[exp.feature_id == 1].study_id) == set(f1.study_id)
    assert list(stats.cohort_size) == [10, 6, 0]
    assert list(stats.testable) == [True, True, False]
    assert stats.loc[2, "flag"].startswith("dead")
    ctrl = coh[(coh.role == "control") & (coh.feature_id == 0)]
    assert len(ctrl) == 20 and not set(ctrl.study_id) & set(f0.study_id)
    ranks = exp[exp.feature_id == 0].sort_values("rank")
    assert ranks["value"].is_monotonic_decreasing


def test_sparse_activations_drops_zeros() -> None:
    vals = np.array([[0.5, 0.0], [1.0, 2.0]], dtype=np.float32)
    idx = np.array([[3, 1], [0, 3]])
    df = sparse_activations(np.array(["a", "b"]), vals, idx)
    assert df.values.tolist() == [["a", 3, 0.5], ["b", 0, 1.0], ["b", 3, 2.0]]


def _reference(activations: pd.DataFrame, study_ids: np.ndarray, n_features: int, cfg: CohortConfig
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rule written plainly, one feature at a time (the implementation before it was
    made to scale): an independent reference for the vectorised one."""
    n = len(study_ids)
    act = activations[activations["value"] > 0]
    stats, cohorts = [], []
    for f in range(n_features):
        g = act[act["feature_id"] == f]
        vals = g["value"].to_numpy(np.float64)
        thr = percentile_with_zeros(vals, n, cfg.percentile)
        exposed = g[g["value"] >= thr].sort_values(["value", "study_id"], ascending=[False, True])
        size = len(exposed)
        flag = ("dead: never fires" if len(vals) == 0 else f"cohort too small ({size} < {cfg.min_cohort_size})"
                if size < cfg.min_cohort_size else "fires on every study: no controls" if size >= n else None)
        stats.append({"feature_id": f, "n_studies": n, "n_active": len(vals), "frac_active": len(vals) / n,
                      "mean_active": float(vals.mean()) if len(vals) else None,
                      "max_value": float(vals.max()) if len(vals) else None,
                      "threshold": max(thr, 0.0) if len(vals) else None, "cohort_size": size,
                      "testable": flag is None, "flag": flag})
        if not size:
            continue
        cohorts.append(pd.DataFrame({"feature_id": f, "study_id": exposed["study_id"].to_numpy(), "role": "exposed",
                                     "value": exposed["value"].to_numpy(np.float32),
                                     "rank": np.arange(1, size + 1, dtype=np.int32)}))
        silent = np.setdiff1d(study_ids, g["study_id"].to_numpy())
        if cfg.control_sample_size and len(silent):
            rng = np.random.default_rng([cfg.seed, f])
            pick = rng.choice(len(silent), size=min(cfg.control_sample_size, len(silent)), replace=False)
            ctrl = silent[np.sort(pick)]
            cohorts.append(pd.DataFrame({"feature_id": f, "study_id": ctrl, "role": "control",
                                         "value": np.zeros(len(ctrl), np.float32),
                                         "rank": np.arange(1, len(ctrl) + 1, dtype=np.int32)}))
    return pd.DataFrame(stats), pd.concat(cohorts, ignore_index=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_cohorts_equal_the_plain_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_f = 400, 12
    ids = np.array([f"st{i:04d}" for i in rng.permutation(n)], dtype=object)
    rows = []
    for f in range(n_f - 3):  # the last two features never fire
        k = int(rng.integers(1, n))
        who = rng.choice(n + 20, size=k, replace=False)  # some ids no study has
        vals = np.round(rng.exponential(1.0, k), 1).astype(np.float32)  # ties on purpose
        vals[rng.uniform(size=k) < 0.1] = 0.0  # zero entries do not count as firing
        rows.append(pd.DataFrame({"study_id": [f"st{i:04d}" for i in who], "feature_id": f, "value": vals}))
    rows.append(pd.DataFrame({"study_id": ids, "feature_id": n_f - 3, "value": np.float32(1.0)}))  # every study
    acts = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cfg = CohortConfig(min_cohort_size=15, control_sample_size=50, seed=seed)
    stats, coh = feature_stats_and_cohorts(acts, ids, n_f, cfg)
    ref_stats, ref_coh = _reference(acts, ids, n_f, cfg)
    assert (stats["unit"] == "feature").all() and (coh["unit"] == "feature").all()
    pd.testing.assert_frame_equal(stats.drop(columns="unit"), ref_stats)
    pd.testing.assert_frame_equal(coh.drop(columns="unit"), ref_coh, check_dtype=False)
    # units by id (families carry their parent's id: not a range): the same rule per unit
    pick = np.array([2, 5, n_f - 1])
    u_stats, u_coh = unit_stats_and_cohorts(acts, ids, pick, cfg, "family")
    assert (u_stats["unit"] == "family").all() and (u_coh["unit"] == "family").all()
    pd.testing.assert_frame_equal(u_stats.drop(columns="unit"),
                                  ref_stats[ref_stats["feature_id"].isin(pick)].reset_index(drop=True))
    pd.testing.assert_frame_equal(u_coh.drop(columns="unit"),
                                  ref_coh[ref_coh["feature_id"].isin(pick)].reset_index(drop=True), check_dtype=False)
