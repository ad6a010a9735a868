from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.errors import ContractError
from models.outcomes.population import population_arrays, study_population
from models.outcomes.split import study_splits
from models.stats.association import outcome_matrices


def _labels(seed: int = 0, n_subj: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subj):
        for k in range(rng.integers(1, 4)):
            rows.append({"study_id": f"{s:03d}-{k}", "subject_id": s, "outcome_id": "a", "eligible": True,
                         "event": bool(rng.uniform() < 0.2), "time_days": 100.0, "age_years": 60.0, "sex": "F"})
    return pd.DataFrame(rows)


def _table(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    lab = _labels(seed)
    ids = lab["study_id"].to_numpy()
    image = ids[np.random.default_rng(seed + 1).uniform(size=len(ids)) < 0.7]
    return lab, study_population(lab, {"report": ids, "image": image}, 0.5, 3), image


def test_population_rows_match_split_and_encoded_studies() -> None:
    lab, table, image = _table()
    om = outcome_matrices(lab)
    assert len(table) == 2 * len(om.study_ids) and not table.duplicated(["modality", "study_id"]).any()
    shuffled = table.sample(frac=1.0, random_state=0)
    pop = population_arrays(shuffled, om.study_ids, om.subject_ids, ["image", "report"], "t.parquet")
    np.testing.assert_array_equal(pop.split, study_splits(lab, om.study_ids, 0.5, 3))
    np.testing.assert_array_equal(pop.encoded["image"], np.isin(om.study_ids, image))
    assert pop.encoded["report"].all() and 0 < pop.encoded["image"].mean() < 1


def _refused(table: pd.DataFrame, lab: pd.DataFrame, match: str, modalities: tuple[str, ...] = ("image",)) -> None:
    om = outcome_matrices(lab)
    with pytest.raises(ContractError, match=match):
        population_arrays(table, om.study_ids, om.subject_ids, list(modalities), "t.parquet")


def test_population_refuses_tables_that_do_not_fit_the_labels() -> None:
    lab, table, _ = _table(1)
    _refused(table, lab, "no rows for modality 'text'", ("text",))
    _refused(table.iloc[1:], lab, "without a row for modality")
    _refused(table.assign(split=table["split"].where(table.index != 4, "test")), lab, "t.parquet, row 4")
    _refused(table.assign(subject_id=table["subject_id"] + 1), lab, "another patient")
    flip = {"discovery": "validation", "validation": "discovery"}
    one = table["study_id"] == table["study_id"].iloc[0]
    img = table["modality"] == "image"
    _refused(table.assign(split=table["split"].where(~(one & img), table["split"].map(flip))), lab,
             "another split", ("report", "image"))
    multi = lab.groupby("subject_id")["study_id"].unique()
    study = multi[multi.map(len) > 1].iloc[0][0]
    both = table["study_id"] == study
    _refused(table.assign(split=table["split"].where(~both, table["split"].map(flip))), lab, "both splits",
             ("report", "image"))
