from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import CohortConfig
from models.cohorts import feature_stats_and_cohorts, percentile_with_zeros, sparse_activations


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
