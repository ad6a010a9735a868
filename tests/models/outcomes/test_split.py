from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.errors import ContractError
from models.outcomes.split import check_disjoint, split_patients, study_splits


def _labels(seed: int = 0, n_subj: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subj):
        for k in range(rng.integers(1, 4)):
            for o, p in (("a", 0.2), ("b", 0.05)):
                rows.append({"study_id": f"{s}-{k}", "subject_id": s, "outcome_id": o,
                             "eligible": True, "event": bool(rng.uniform() < p)})
    return pd.DataFrame(rows)


def test_split_is_seeded_by_patient_and_stratified() -> None:
    lab = _labels()
    s1, s2 = split_patients(lab, 0.5, 3), split_patients(lab, 0.5, 3)
    assert s1.equals(s2) and not s1.equals(split_patients(lab, 0.5, 4))
    cases = lab[lab.event].groupby("outcome_id")["subject_id"].unique()
    for subj in cases:
        share = (s1.loc[subj] == "discovery").mean()
        assert abs(share - 0.5) <= 1.0 / len(subj) + 1e-9 or abs(share - 0.5) < 0.1
    per_study = study_splits(lab, lab["study_id"].unique(), 0.5, 3)
    frame = pd.DataFrame({"study_id": lab["study_id"].unique(), "split": per_study})
    frame["subject_id"] = frame["study_id"].str.split("-").str[0].astype(int)
    assert (frame.groupby("subject_id")["split"].nunique() == 1).all()


def test_patient_in_both_splits_is_refused() -> None:
    lab = _labels(1, 20)
    split = split_patients(lab, 0.5, 0)
    rows = lab.drop_duplicates("study_id").assign(split=lambda d: d["subject_id"].map(split))
    multi = rows.groupby("subject_id").filter(lambda g: len(g) > 1).index[0]
    rows.loc[multi, "split"] = "validation" if rows.loc[multi, "split"] == "discovery" else "discovery"
    with pytest.raises(ContractError, match="both splits"):
        check_disjoint(rows, split)
