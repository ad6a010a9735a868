"""Discovery / validation split by patient, seeded and stratified by outcome.

Stratum = the patient's outcome-incidence pattern (which outcomes they develop in any
eligible study), so each outcome's cases divide between the splits in the configured
proportion. Within a stratum patients are shuffled and assigned by systematic sampling
with a random offset: each stratum's discovery share is within one patient of `frac`.
All studies of a patient land in the same split; `check_disjoint` enforces it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.errors import ContractError

DISCOVERY, VALIDATION = "discovery", "validation"


def split_patients(labels: pd.DataFrame, frac: float, seed: int) -> pd.Series:
    """subject_id -> 'discovery' | 'validation' from OUTCOME_LABELS rows."""
    pattern = _incidence_patterns(labels)
    subjects = pd.Index(np.sort(labels["subject_id"].unique()))
    key = pd.Series(pattern.reindex(subjects).fillna("").to_numpy(), index=subjects)
    rng = np.random.default_rng(seed)
    order = pd.DataFrame({"key": key.to_numpy(), "u": rng.uniform(size=len(subjects))}, index=subjects)
    order = order.sort_values(["key", "u"])
    pos = order.groupby("key").cumcount().to_numpy()
    offsets = {k: rng.uniform() for k in sorted(order["key"].unique())}
    off = order["key"].map(offsets).to_numpy(np.float64)
    take = np.floor((pos + 1) * frac + off) > np.floor(pos * frac + off)
    return pd.Series(np.where(take, DISCOVERY, VALIDATION), index=order.index, name="split").sort_index()


def _incidence_patterns(labels: pd.DataFrame) -> pd.Series:
    """subject_id -> the sorted outcome ids of its eligible cases joined by '|' (patients
    with none absent). Concatenated by groupby-sum, not a Python function per patient
    (that took 3.4 s for 95,000 patients)."""
    hit = labels.loc[labels["eligible"] & labels["event"], ["subject_id", "outcome_id"]]
    hit = hit.assign(outcome_id=hit["outcome_id"].astype(str)).drop_duplicates()
    hit = hit.sort_values(["subject_id", "outcome_id"], kind="stable")
    joined = (hit["outcome_id"] + "|").groupby(hit["subject_id"].to_numpy()).sum()
    return joined.str[:-1].rename_axis("subject_id").rename("outcome_id")


def check_disjoint(study_subject: pd.DataFrame, split: pd.Series) -> None:
    """Raise if any patient has studies in both splits (would leak discovery into validation).

    `study_subject` has subject_id and a per-row `split` column; `split` is the per-subject map."""
    per = study_subject.groupby("subject_id")["split"].nunique()
    bad = per[per > 1]
    if len(bad):
        raise ContractError("discovery/validation split", None, "subject_id",
                            f"patients in both splits: {bad.index[:5].tolist()}",
                            "assign splits per patient (split_patients), never per study")
    missing = set(study_subject["subject_id"]) - set(split.index)
    if missing:
        raise ContractError("discovery/validation split", None, "subject_id",
                            f"patients without a split: {sorted(missing)[:5]}", "split every labelled patient")


def study_splits(labels: pd.DataFrame, study_ids: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """The split of each study in `study_ids` (by its patient), checked disjoint."""
    split = split_patients(labels, frac, seed)
    lab = labels[["study_id", "subject_id"]].drop_duplicates("study_id")
    lab = lab.assign(split=lab["subject_id"].map(split))
    check_disjoint(lab, split)
    return lab.set_index("study_id")["split"].reindex(study_ids).to_numpy()
