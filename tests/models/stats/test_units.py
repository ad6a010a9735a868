"""Features and families as columns of one analysis: column layout, keys both ways, and
ranking restricted to findings (families and features in no family)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import AssociationConfig
from models.stats.ranking import rank_discovery
from models.stats.units import from_columns, to_columns, unit_columns


def _stats() -> pd.DataFrame:
    return pd.DataFrame({"unit": ["feature"] * 4 + ["family"], "feature_id": [0, 1, 2, 3, 1],
                         "testable": [True, True, False, True, True],
                         "family_id": pd.array([pd.NA, 1, 1, pd.NA, 1], dtype="Int32")})


def test_columns_families_first_and_rankable_findings() -> None:
    cols = unit_columns(_stats())
    assert list(zip(cols["unit"], cols["feature_id"], strict=True)) == [
        ("family", 1), ("feature", 0), ("feature", 1), ("feature", 2), ("feature", 3)]
    assert cols["rankable"].tolist() == [True, True, False, False, True]
    rows = pd.DataFrame({"unit": ["feature", "family", "feature"], "feature_id": [3, 1, 9], "x": [1, 2, 3]})
    keyed = to_columns(rows, cols)
    assert keyed["feature_id"].tolist() == [4, 0] and keyed["x"].tolist() == [1, 2]  # unknown unit dropped
    back = from_columns(keyed, cols)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), rows.iloc[:2].astype({"feature_id": np.int32}))


def test_members_are_tested_but_do_not_rank() -> None:
    cfg = AssociationConfig(min_exposed_cases=0)
    df = pd.DataFrame({"split": "discovery", "modality": "report", "outcome_id": "o", "feature_id": [0, 1, 2, 3],
                       "score_p": [1e-6, 1e-9, 1e-4, 1e-5], "score_q": [1e-5, 1e-8, 1e-3, 1e-4],
                       "n_exposed_cases": 10, "adj_log_or": 1.0, "adj_or_ci_low": [2.0, 5.0, 1.5, 3.0],
                       "adj_p_value": 1e-5, "rankable": [True, False, True, True]})
    out = rank_discovery(df, cfg)
    assert out["rank"].tolist() == [2, pd.NA, 3, 1] and (out["n_tested"] == 3).all() and (out["n_ranked"] == 3).all()
    every = rank_discovery(df.drop(columns="rankable"), cfg)
    assert every["rank"].tolist() == [3, 1, 4, 2] and (every["n_tested"] == 4).all()
