"""Activation histograms of the features that get a report page: how a feature's values are
spread over all studies, so a reader sees where the cohort threshold cuts.

Bin 0 holds the studies where the feature does not fire (value 0: absent from the sparse
activations table); bins 1..n split (0, max] into equal widths."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

COLUMNS = ["modality", "unit", "feature_id", "bin", "lo", "hi", "n_studies"]


def feature_histogram(values: np.ndarray, n_studies: int, n_bins: int) -> pd.DataFrame:
    """Bins of one feature. `values`: its non-zero activations; `n_studies`: all studies
    the SAE encoded (the rest of them are the zero bin)."""
    v = np.asarray(values, np.float64)
    v = v[v > 0]
    zero = pd.DataFrame({"bin": [0], "lo": [0.0], "hi": [0.0], "n_studies": [max(int(n_studies) - len(v), 0)]})
    if len(v) == 0:
        return zero
    counts, edges = np.histogram(v, bins=n_bins, range=(0.0, float(v.max())))
    pos = pd.DataFrame({"bin": np.arange(1, n_bins + 1), "lo": edges[:-1], "hi": edges[1:], "n_studies": counts})
    return pd.concat([zero, pos], ignore_index=True)


def activation_histograms(
    modality: str, activations: pd.DataFrame, feature_stats: pd.DataFrame, features: Iterable[int], n_bins: int,
    unit: str = "feature",
) -> pd.DataFrame:
    """ACTIVATION_HISTOGRAMS rows of `features` (units of kind `unit`). activations:
    ACTIVATIONS rows (study_id, feature_id, value), for families FAMILY_ACTIVATIONS with
    family_id as feature_id; feature_stats: FEATURE_STATS rows (n_studies is the total)."""
    feats = sorted({int(f) for f in features})
    if "unit" in feature_stats.columns:
        feature_stats = feature_stats[feature_stats["unit"] == unit]
    totals = dict(zip(feature_stats["feature_id"].astype(int), feature_stats["n_studies"].astype(int), strict=True))
    acts = activations[activations["feature_id"].isin(feats)]
    by = {int(str(f)): g["value"].to_numpy() for f, g in acts.groupby("feature_id", sort=False)}
    frames = [
        feature_histogram(by.get(f, np.empty(0)), totals.get(f, 0), n_bins).assign(modality=modality, unit=unit,
                                                                                   feature_id=f)
        for f in feats if f in totals
    ]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)[COLUMNS]
    return out.astype({"feature_id": "int32", "bin": "int32", "n_studies": "int64"})
