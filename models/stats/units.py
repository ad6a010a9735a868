"""Units of analysis: features and feature families side by side as the columns of one
exposure matrix, so screening, multiple testing (BH and Bonferroni count every family
too), exact fits and ranking treat a family like any feature and rank both in one list.

Families take the first columns. Ranking breaks an exact tie by column, and a family whose
cohort equals one of its members' is the same finding, better named whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNIT_KEY = ["unit", "feature_id"]


def unit_columns(stats: pd.DataFrame) -> pd.DataFrame:
    """(unit, feature_id, testable, rankable) per column, from FEATURE_STATS rows: families
    by id, then features by id. Rankable: a finding, i.e. a family, or a feature in no
    family (its `family_id` is null)."""
    order = stats.assign(_feature=(stats["unit"] != "family")).sort_values(["_feature", "feature_id"],
                                                                          kind="mergesort")
    fam = order["family_id"] if "family_id" in order.columns else pd.Series(pd.NA, index=order.index)
    cols = order[[*UNIT_KEY, "testable"]].assign(rankable=(order["unit"] == "family") | fam.isna())
    return cols.reset_index(drop=True).astype({"unit": object, "feature_id": np.int64, "testable": bool,
                                               "rankable": bool})


def to_columns(rows: pd.DataFrame, columns: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by (unit, feature_id) re-keyed by column (in `feature_id`); rows of units
    that have no column are dropped."""
    index = pd.MultiIndex.from_frame(columns[UNIT_KEY])
    keys = rows[UNIT_KEY].astype({"unit": object, "feature_id": np.int64})
    col = index.get_indexer(pd.MultiIndex.from_frame(keys))
    keep = col >= 0
    return rows[keep].assign(feature_id=col[keep])


def from_columns(df: pd.DataFrame, columns: pd.DataFrame) -> pd.DataFrame:
    """Inverse of to_columns on result rows: `feature_id` (a column) -> unit, feature_id."""
    col = df["feature_id"].to_numpy(np.int64)
    out = df.assign(unit=columns["unit"].to_numpy()[col], feature_id=columns["feature_id"].to_numpy()[col])
    return out.astype({"feature_id": np.int32})
