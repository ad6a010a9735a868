"""A family's activation per study, from its members' activations.

Default `norm`: the length of the family's share of the reconstruction,
|| sum_{j in family} f_j d_j || with unit decoder rows d_j. For a single firing member it
is that member's activation, so family and feature cohorts are on one scale; two split
members writing nearly the same direction are not counted twice (as `sum` would), and a
Matryoshka child that adds its own direction to its parent's adds in quadrature.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from models.families.rule import unit_rows

CHUNK_ROWS = 65536  # multi-member rows turned into d-vectors at a time


def family_activations(activations: pd.DataFrame, members: dict[int, np.ndarray], decoder: np.ndarray,
                       how: Literal["norm", "sum", "max"] = "norm") -> pd.DataFrame:
    """FAMILY_ACTIVATIONS rows (study_id, family_id, value > 0) from ACTIVATIONS rows and
    each family's members (family id -> feature ids)."""
    fam_of = np.full(decoder.shape[0], -1, dtype=np.int64)
    for fid, m in members.items():
        fam_of[np.asarray(m, np.int64)] = fid
    act = activations[activations["value"] > 0]
    fam = fam_of[act["feature_id"].to_numpy(np.int64)]
    act = act[fam >= 0].assign(family_id=fam[fam >= 0])
    if act.empty:
        return pd.DataFrame({"study_id": pd.Series(dtype=object), "family_id": pd.Series(dtype=np.int32),
                             "value": pd.Series(dtype=np.float32)})
    act = act.sort_values(["study_id", "family_id", "feature_id"], kind="mergesort", ignore_index=True)
    g = act.groupby(["study_id", "family_id"], sort=False)["value"]
    if how == "norm":
        value = _norms(act, unit_rows(decoder))
        keys = act[["study_id", "family_id"]].drop_duplicates(ignore_index=True)
    else:
        agg = g.sum() if how == "sum" else g.max()
        keys, value = agg.index.to_frame(index=False), agg.to_numpy(np.float64)
    return pd.DataFrame({"study_id": keys["study_id"].to_numpy(), "family_id": keys["family_id"].to_numpy(np.int32),
                         "value": np.asarray(value, dtype=np.float32)})


def _norms(act: pd.DataFrame, unit: np.ndarray) -> np.ndarray:
    """|| sum f_j d_j || per (study, family) group of rows sorted by that key; groups of
    one row are their value, the rest are summed as vectors a chunk at a time."""
    sid, fam = act["study_id"].to_numpy(), act["family_id"].to_numpy()
    start = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (fam[1:] != fam[:-1])])
    size = np.diff(np.r_[start, len(act)])
    vals = act["value"].to_numpy(np.float64)
    feats = act["feature_id"].to_numpy(np.int64)
    out = vals[start].copy()
    multi = np.flatnonzero(size > 1)
    i = 0
    while i < len(multi):
        # whole groups per chunk, at least one
        j = i + max(1, int(np.searchsorted(np.cumsum(size[multi[i:]]), CHUNK_ROWS, side="right")))
        grp = multi[i:j]
        rows = np.concatenate([np.arange(start[k], start[k] + size[k]) for k in grp])
        vec = vals[rows, None] * unit[feats[rows]].astype(np.float64)
        bounds = np.r_[0, np.cumsum(size[grp])[:-1]]
        out[grp] = np.linalg.norm(np.add.reduceat(vec, bounds, axis=0), axis=1)
        i = j
    return out
