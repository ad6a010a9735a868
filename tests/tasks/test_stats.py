"""The associate task with the OR-per-SD option, on the tiny generated cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as smapi

from data_contracts.config import (
    AssociationConfig,
    CohortConfig,
    CTRadiomicsConfig,
    FamilyConfig,
    InputsConfig,
    ModalityConfig,
    SAEConfig,
)
from data_contracts.store import ArtifactStore
from models.demo.cohort import DemoCohortConfig, generate_demo_cohort
from models.outcomes.split import study_splits
from models.stats.association import outcome_matrices
from tasks.cohorts import cohorts_fn
from tasks.demo import demo_run_config
from tasks.encoders import embed_fn
from tasks.families import families_fn
from tasks.ingest import ingest_events_fn, ingest_studies_fn
from tasks.outcomes import outcomes_fn, study_split_fn
from tasks.sae import activations_fn, train_fn
from tasks.stats import associate_fn

SD_COLS = ["sd_odds_ratio", "sd_ci_low", "sd_ci_high", "sd_p_value"]


def test_associate_or_per_sd_from_activation_artifact(tmp_path: Path) -> None:
    # The session's 60-patient cohort has 1-2 cases per outcome and split: too few for any
    # adjusted model, so this test generates 300 patients (small volumes keep it ~15 s).
    cohort = tmp_path / "cohort"
    generate_demo_cohort(cohort, DemoCohortConfig(n_patients=300, volume_shape=(16, 16, 12), seed=7))
    inputs = InputsConfig(studies=cohort / "studies.parquet", events=cohort / "events.parquet",
                          outcomes=cohort / "outcomes.yaml")
    settings = demo_run_config(tmp_path, inputs).outcome_settings
    store = ArtifactStore(tmp_path / "store")
    st = ingest_studies_fn(store, inputs.studies)
    lab = outcomes_fn(store, st, ingest_events_fn(store, inputs.events), inputs.outcomes, settings)
    emb = embed_fn(store, st, ModalityConfig(modality="image", encoder=CTRadiomicsConfig()), str(cohort))
    sae = train_fn(store, emb, SAEConfig(n_features=16, k=4, epochs=5))
    act = activations_fn(store, emb, sae)
    fam = families_fn(store, emb, sae, act, FamilyConfig())
    fs, coh = cohorts_fn(store, emb, sae, act, fam, CohortConfig(min_cohort_size=3))
    base = AssociationConfig(min_exposed_cases=1, exact_select="top", exact_top_m=64)
    with_sd = AssociationConfig(min_exposed_cases=1, exact_select="top", exact_top_m=64, or_per_sd=True)
    split_ref = study_split_fn(store, lab, {"image": emb}, base)
    off = store.read_table(associate_fn(store, {"image": (fs, coh)}, lab, split_ref, base, {"image": (act, fam)}))
    assert off[SD_COLS].isna().all().all()
    with pytest.raises(ValueError, match="activations"):
        associate_fn(store, {"image": (fs, coh)}, lab, split_ref, with_sd)
    on_ref = associate_fn(store, {"image": (fs, coh)}, lab, split_ref, with_sd, {"image": (act, fam)})
    on = store.read_table(on_ref)
    assert store.manifest(on_ref)["contract"] == "associations@5"
    fitted = on[on["sd_odds_ratio"].notna()]
    # exact_select "top" with exact_top_m >= the number of units (features and families)
    # selects every pair tested in discovery: each gets an OR per SD or a flag saying why
    # not, in both splits; no other pair does
    key = ["unit", "feature_id", "outcome_id"]
    selected = on.loc[(on["split"] == "discovery") & on["score_p"].notna(), key]
    is_sel = pd.MultiIndex.from_frame(on[key]).isin(pd.MultiIndex.from_frame(selected))
    has_sd = on["sd_odds_ratio"].notna() | on["sd_flag"].notna()
    assert len(fitted) > 0 and (has_sd == is_sel).all()
    # Independent check of a fitted pair of each unit: rebuild its analysis rows and fit statsmodels.
    labels = store.read_table(lab)
    om = outcome_matrices(labels)
    split = study_splits(labels, om.study_ids, base.split_frac, base.split_seed)
    enc = np.isin(om.study_ids, store.read_table(emb)["study_id"])
    values = {"feature": store.read_table(act),
              "family": store.read_table(fam, "activations").rename(columns={"family_id": "feature_id"})}
    assert set(fitted["unit"]) == {"feature", "family"}
    for unit, g in fitted.groupby("unit"):
        r = g.sort_values(["split", "outcome_id", "feature_id"]).iloc[0]
        o = om.outcome_ids.index(r.outcome_id)
        # binary_controls complete_followup: event-free studies need the whole window followed
        known = labels[labels["outcome_id"] == r.outcome_id].set_index("study_id")
        known = (known["event"] | known["complete_followup"]).reindex(om.study_ids).to_numpy(bool)
        rows = om.M[:, o] & known & (split == r.split) & enc & np.isfinite(om.age) & np.isfinite(om.male)
        a = values[str(unit)]
        a = a[a["feature_id"] == r.feature_id].set_index("study_id")["value"]
        x = a.reindex(om.study_ids).fillna(0.0).to_numpy(np.float64)[rows]
        D = np.column_stack([np.ones(rows.sum()), om.age[rows], om.male[rows], (x - x.mean()) / x.std(ddof=1)])
        ref = smapi.Logit(om.Y[rows, o].astype(float), D).fit(method="newton", tol=1e-14, disp=0)
        assert np.log(r.sd_odds_ratio) == pytest.approx(ref.params[-1], rel=1e-8, abs=1e-10)
        assert r.sd_p_value == pytest.approx(ref.pvalues[-1], rel=1e-6)
    cols = [c for c in off.columns if c not in (*SD_COLS, "sd_flag")]
    assert on[cols].equals(off[cols])
