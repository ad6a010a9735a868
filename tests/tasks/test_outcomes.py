"""The study_split artifact is the one population association and survival analyse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import AssociationConfig, SurvivalConfig
from data_contracts.errors import ContractError
from data_contracts.schemas import COHORTS, EMBEDDINGS, FEATURE_STATS, OUTCOME_LABELS, Contract
from data_contracts.store import ArtifactRef, ArtifactStore
from models.outcomes.split import study_splits
from tasks.outcomes import study_split_fn
from tasks.stats import associate_fn, survival_fn

N = 700


def _artifact(store: ArtifactStore, kind: str, version: str, df: pd.DataFrame, contract: Contract) -> ArtifactRef:
    with store.writer(kind, version, contract=contract.key, inputs=[], params={}) as (w, out):
        w.write_table("data", df, contract)
    return out[0]


def _labels(rng: np.random.Generator, feature: np.ndarray) -> pd.DataFrame:
    t_event = rng.exponential(np.where(feature, 1500.0, 9000.0))
    t_end = rng.uniform(400, 1461, N)
    return pd.DataFrame({
        "study_id": [f"st{i:04d}" for i in range(N)], "subject_id": np.arange(N) // 2, "outcome_id": "o",
        "index_time": pd.Timestamp("2020-01-01"), "prior": False, "eligible": rng.uniform(size=N) < 0.95,
        "event": t_event <= t_end, "time_days": np.minimum(t_event, t_end), "complete_followup": t_event <= t_end,
        "age_years": rng.normal(60, 8, N), "sex": np.where(rng.uniform(size=N) < 0.5, "M", "F"), "flag": None})


def _modality(store: ArtifactStore, name: str, ids: np.ndarray, exposed: list[np.ndarray]
              ) -> tuple[ArtifactRef, ArtifactRef, ArtifactRef]:
    """embeddings (the encoded studies), feature_stats and cohorts of one modality: a
    feature per cohort in `exposed`, and a family (id 0) whose cohort is feature 0's."""
    emb = _artifact(store, "embeddings", name, pd.DataFrame({"study_id": ids, "embedding": [[0.0]] * len(ids)}),
                    EMBEDDINGS)
    units = [("feature", f, s) for f, s in enumerate(exposed)] + [("family", 0, exposed[0])]
    coh = pd.concat([pd.DataFrame({"unit": u, "feature_id": f, "study_id": s, "role": "exposed", "value": 1.0,
                                   "rank": np.arange(1, len(s) + 1)}) for u, f, s in units])
    sizes = [len(s) for _, _, s in units]
    fs = pd.DataFrame({"unit": [u for u, _, _ in units], "feature_id": [f for _, f, _ in units],
                       "n_studies": len(ids), "n_active": sizes, "frac_active": np.divide(sizes, len(ids)),
                       "cohort_size": sizes, "testable": True})
    return emb, _artifact(store, "feature_stats", name, fs, FEATURE_STATS), _artifact(store, "cohorts", name, coh,
                                                                                      COHORTS)


def test_association_and_survival_analyse_the_same_studies(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    feature, noise = rng.uniform(size=N) < 0.3, rng.uniform(size=N) < 0.3
    quarantined = rng.uniform(size=N) < 0.2  # the image encoder failed on these
    store = ArtifactStore(tmp_path / "store")
    labels = _labels(rng, feature)
    lab = _artifact(store, "outcome_labels", "v", labels, OUTCOME_LABELS)
    ids = labels["study_id"].to_numpy()
    ok = ~quarantined
    image = _modality(store, "image", ids[ok], [ids[feature & ok], ids[noise & ok]])
    report = _modality(store, "report", ids, [ids[feature], ids[noise]])
    # Every event-free study here is censored before the window's end: the default
    # binary_controls would leave them all out of the 2x2 (survival keeps them censored).
    acfg = AssociationConfig(min_exposed_cases=1, split_seed=5, binary_controls="all")
    embs = {"image": image[0], "report": report[0]}
    split = study_split_fn(store, lab, embs, acfg)
    assoc = associate_fn(store, {"image": image[1:], "report": report[1:]}, lab, split, acfg)
    outcomes = tmp_path / "outcomes.yaml"
    outcomes.write_text("outcomes:\n  - {id: o, name: O, codes: ['X'], window_years: 4}\n")
    cohorts = {"image": image[2], "report": report[2]}
    surv = survival_fn(store, lab, assoc, split, cohorts, outcomes, SurvivalConfig())
    for ref in (assoc, surv):
        assert split.to_dict() in store.manifest(ref)["inputs"]

    table = store.read_table(split)
    assert (table.groupby("study_id")["split"].nunique() == 1).all()
    per_study = table.drop_duplicates("study_id").set_index("study_id")["split"].reindex(ids).to_numpy()
    np.testing.assert_array_equal(per_study, study_splits(labels, ids, acfg.split_frac, acfg.split_seed))
    enc = table.pivot(index="study_id", columns="modality", values="encoded").reindex(ids)
    np.testing.assert_array_equal(enc["image"].to_numpy(bool), ok)

    s = store.read_table(surv)
    a = store.read_table(assoc).set_index(["modality", "unit", "feature_id", "outcome_id", "split"])
    assert {"image", "report"} <= set(s["modality"]) and set(s["split"]) == {"discovery", "validation"}
    # the family has feature 0's cohort: it ranks beside it, first (families win exact ties)
    disc = a.xs(("report", "o", "discovery"), level=("modality", "outcome_id", "split"))
    assert disc.loc[("family", 0), "rank"] == 1 and disc.loc[("feature", 0), "rank"] == 2
    assert disc["n_tested"].iloc[0] == 3  # two features and the family: all counted
    fam = s[s["unit"] == "family"].set_index(["modality", "split"])
    feat = s[(s["unit"] == "feature") & (s["feature_id"] == 0)].set_index(["modality", "split"])
    assert len(fam) == 4 and np.allclose(fam["hazard_ratio"], feat.loc[fam.index, "hazard_ratio"], equal_nan=True)
    for r in s.itertuples():
        x = a.loc[(r.modality, r.unit, r.feature_id, r.outcome_id, r.split)]
        assert (r.n_exposed, r.n) == (x.n_exposed, x.n_exposed + x.n_unexposed)
        assert (r.n_exposed_events, r.n_events) == (x.n_exposed_cases, x.n_exposed_cases + x.n_unexposed_cases)
        rows = labels["eligible"].to_numpy() & (per_study == r.split) & enc[r.modality].to_numpy(bool)
        assert r.n == rows.sum()

    other = study_split_fn(store, lab, embs, acfg.model_copy(update={"split_seed": 6}))
    with pytest.raises(ContractError, match="study_split"):
        survival_fn(store, lab, assoc, other, cohorts, outcomes, SurvivalConfig())
