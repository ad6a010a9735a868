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


def test_strata_are_each_patients_sorted_case_outcomes() -> None:
    """The stratum key equals the plain per-patient definition (set of eligible case
    outcomes, sorted, '|'-joined), repeats and non-cases ignored."""
    from models.outcomes.split import _incidence_patterns

    rng = np.random.default_rng(3)
    n = 5000
    lab = pd.DataFrame({"subject_id": rng.integers(0, 800, n),
                        "outcome_id": rng.choice(["o10", "o2", "b", "a", "z9"], n),
                        "eligible": rng.uniform(size=n) < 0.8, "event": rng.uniform(size=n) < 0.3})
    hit = lab[lab["eligible"] & lab["event"]]
    want = {s: "|".join(sorted(set(g))) for s, g in hit.groupby("subject_id")["outcome_id"]}
    got = _incidence_patterns(lab)
    assert got.to_dict() == want
    assert set(lab["subject_id"]) - set(got.index)  # patients without a case have no key
