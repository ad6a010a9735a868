"""The association statistics on the demo's planted outcome data, with the planted findings
as cohorts: under ML and under Firth (`firth: true`) every planted link ranks first for its
outcome, the age-confounded finding ranks for nothing, one estimator stands behind every
rank and the report's methods table says which."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from data_contracts.config import AssociationConfig, OutcomeSettings, load_outcome_definitions
from models.demo.cohort import DemoCohortConfig, generate_demo_cohort
from models.outcomes.labels import outcome_labels
from models.outcomes.split import study_splits
from models.stats.association import associate_splits, outcome_matrices
from models.stats.methods import association_methods


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp("planted")
    generate_demo_cohort(out, DemoCohortConfig(n_patients=2000, write_images=False, seed=0))
    labels = outcome_labels(pd.read_parquet(out / "studies.parquet"), pd.read_parquet(out / "events.parquet"),
                            load_outcome_definitions(out / "outcomes.yaml"), OutcomeSettings())
    return labels, json.loads(Path(out / "truth.json").read_text())


def _run(labels: pd.DataFrame, truth: dict, cfg: AssociationConfig) -> tuple[pd.DataFrame, list[str]]:
    om = outcome_matrices(labels)
    names = sorted(truth["findings"])
    rng = np.random.default_rng(1)
    cols = [np.isin(om.study_ids, truth["findings"][f]["study_ids"]) for f in names]
    cols += [rng.uniform(size=len(om.study_ids)) < 0.08 for _ in range(10)]  # unrelated "features"
    E = sp.csc_matrix(np.column_stack(cols).astype(float))
    split = study_splits(labels, om.study_ids, cfg.split_frac, cfg.split_seed)
    res = associate_splits({"report": (E, np.ones(E.shape[1], bool), np.ones(len(split), bool))}, om, split, cfg)
    return res, names


@pytest.mark.parametrize("firth", [False, True])
def test_planted_links_rank_first_under_ml_and_firth(planted: tuple[pd.DataFrame, dict], firth: bool) -> None:
    labels, truth = planted
    cfg = AssociationConfig(firth=firth)
    res, names = _run(labels, truth, cfg)
    disc = res[res["split"] == "discovery"]
    for link in truth["links"]:
        row = disc[(disc["feature_id"] == names.index(link["finding"])) & (disc["outcome_id"] == link["outcome"])]
        assert row["rank"].iloc[0] == 1, (link, row.T)
        assert bool(row["replicated"].iloc[0])
    conf = disc[disc["feature_id"] == names.index(truth["confounded"][0]["finding"])]
    assert conf["rank"].isna().all()
    ranked = disc[disc["rank"].notna()]
    assert set(ranked["adj_method"]) == {"firth logistic" if firth else "logistic"}
    assert (ranked["replication_p_adj"] >= 0).all()
    statement = association_methods(cfg).set_index("topic").loc["adjusted p", "statement"]
    assert ("penalised likelihood-ratio" in statement) == firth
