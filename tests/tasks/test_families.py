"""The families stage's computation and the family rows it adds to feature_stats and
cohorts, on the constructed SAE of tests/models/families."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import CohortConfig, FamilyConfig
from tasks.cohorts import stats_and_cohorts
from tasks.families import compute_families
from tests.models.families.test_rule import N_STUDIES, PREFIXES, N, constructed_sae


def _acts() -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    W, study, feature, value = constructed_sae()
    ids = np.array([f"s{i:03d}" for i in range(N_STUDIES)])
    return W, pd.DataFrame({"study_id": ids[study], "feature_id": feature.astype(np.int32),
                            "value": value.astype(np.float32)}), ids


def test_family_units_in_stats_and_cohorts() -> None:
    W, acts, ids = _acts()
    table, fam_acts = compute_families(acts, ids, W, list(PREFIXES), FamilyConfig())
    assert table["family_id"].tolist() == [0, 1]
    cfg = CohortConfig(min_cohort_size=5)
    stats, cohorts = stats_and_cohorts(acts, table, fam_acts, ids, N, cfg)
    fam = stats[stats["unit"] == "family"].set_index("feature_id")
    feat = stats[stats["unit"] == "feature"].set_index("feature_id")
    assert fam.index.tolist() == [0, 1] and fam["family_id"].tolist() == [0, 1]
    assert feat.loc[[9, 10, 15], "family_id"].tolist() == [0, 0, 0] and feat.loc[12, "family_id"] == 1
    assert feat["family_id"].isna().sum() == N - 6
    # family 1 (split features 1 and 12) fires wherever either fires: 90 of 400 studies,
    # more than 10%, so its cohort is its top 10% (40 studies), as a feature's would be
    assert fam.loc[1, "n_active"] == 90 and fam.loc[1, "cohort_size"] == 40
    exposed = cohorts[(cohorts["unit"] == "family") & (cohorts["role"] == "exposed")]
    assert set(exposed.loc[exposed["feature_id"] == 0, "study_id"]) <= set(ids[:120])


def test_families_off_adds_no_units() -> None:
    W, acts, ids = _acts()
    table, fam_acts = compute_families(acts, ids, W, list(PREFIXES), FamilyConfig(enabled=False))
    assert table.empty and fam_acts.empty
    stats, cohorts = stats_and_cohorts(acts, table, fam_acts, ids, N, CohortConfig())
    assert set(stats["unit"]) == {"feature"} and set(cohorts["unit"]) == {"feature"}
    assert stats["family_id"].isna().all()
