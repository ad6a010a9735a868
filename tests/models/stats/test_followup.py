"""binary_controls: complete_followup vs all, on a planted cohort built from raw MEDS times.

The reference is computed here from the generated times alone (who had the outcome within
the window, who was followed to its end or died in it), independently of
models/outcomes/labels.py, then compared with the 2x2 counts of the association rows and
with statsmodels' logistic fit on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import statsmodels.api as smapi

from data_contracts.config import AssociationConfig, OutcomeDefinition, OutcomeDefinitions, OutcomeSettings
from models.outcomes.labels import outcome_labels
from models.stats.association import associate_splits, outcome_matrices

DAY = pd.Timedelta(days=1)
WINDOW = 4 * 365.25 * DAY
N = 3000


def _planted(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Studies, MEDS events and the raw per-patient truth. Exposed patients get the outcome
    more often *and* are lost to follow-up more often, so the rule changes the OR."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2016-01-01")
    index = t0 + pd.to_timedelta(rng.integers(0, 700, N), unit="D") + pd.Timedelta(hours=10)
    exposed = rng.uniform(size=N) < 0.25
    age = rng.normal(62, 9, N)
    male = rng.uniform(size=N) < 0.5
    onset_days = 1 + rng.exponential(np.where(exposed, 3500, 14000) * np.exp(-0.02 * (age - 62)))
    lost_days = np.where(rng.uniform(size=N) < np.where(exposed, 0.35, 0.15), rng.uniform(30, 1400, N), np.inf)
    death_days = np.where(rng.uniform(size=N) < 0.08, rng.uniform(10, 2000, N), np.inf)
    end_days = np.minimum(lost_days, death_days)
    onset_days = np.where(onset_days < np.minimum(end_days, 3000.0), onset_days, np.inf)  # unseen after follow-up
    rows = []
    for i in range(N):
        birth = index[i] - pd.to_timedelta(age[i] * 365.25, unit="D")
        rows += [(i, birth.normalize(), "MEDS_BIRTH"), (i, pd.NaT, "GENDER//M" if male[i] else "GENDER//F")]
        last = min(end_days[i], 3000.0)  # data end at most ~8 years later
        rows.append((i, (index[i] + last * DAY).normalize(), "ENCOUNTER//OUTPATIENT"))
        if np.isfinite(death_days[i]):
            rows.append((i, (index[i] + death_days[i] * DAY).normalize(), "MEDS_DEATH"))
        if np.isfinite(onset_days[i]):
            rows.append((i, (index[i] + onset_days[i] * DAY).normalize(), "ICD10CM//X01.1"))
    events = pd.DataFrame(rows, columns=["subject_id", "time", "code"])
    events["time"] = events["time"].astype("datetime64[us]")
    events["numeric_value"] = np.nan
    studies = pd.DataFrame({"study_id": [f"s{i:05d}" for i in range(N)], "subject_id": np.arange(N),
                            "study_time": index.astype("datetime64[us]")})
    truth = pd.DataFrame({"exposed": exposed, "age": age, "male": male.astype(float),
                          "onset": onset_days, "lost": lost_days, "death": death_days}, index=studies["study_id"])
    return studies, events, truth


def _reference(truth: pd.DataFrame, studies: pd.DataFrame, events: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Rows of the binary analysis from the raw times: day-resolution dates as in MEDS."""
    idx = studies.set_index("study_id")["study_time"]
    ev = events.set_index("subject_id")
    onset = ev[ev["code"].str.startswith("ICD10CM//X01")]["time"].reindex(range(N))
    death = ev[ev["code"] == "MEDS_DEATH"]["time"].reindex(range(N))
    last = ev.dropna(subset=["time"]).groupby(level=0)["time"].max().reindex(range(N))
    birth = ev[ev["code"] == "MEDS_BIRTH"]["time"].reindex(range(N))
    t = truth.copy()
    t["index"] = idx
    t["age"] = (idx.to_numpy() - birth.to_numpy()) / np.timedelta64(1, "D") // 1 / 365.25
    win_end = t["index"] + WINDOW
    t["event"] = (onset.to_numpy() > t["index"].dt.normalize()) & (onset.to_numpy() <= win_end)
    died_in = death.notna().to_numpy() & (death.to_numpy() <= win_end)
    followed = last.to_numpy() >= win_end
    t["keep"] = t["event"] | died_in | followed if rule == "complete_followup" else True
    return t


@pytest.mark.parametrize("rule", ["complete_followup", "all"])
def test_counts_and_adjusted_or_match_reference(rule: str) -> None:
    studies, events, truth = _planted()
    defs = OutcomeDefinitions(outcomes=(OutcomeDefinition(id="x", name="X", codes=("ICD10CM//X01",)),))
    labels = outcome_labels(studies, events, defs, OutcomeSettings())
    om = outcome_matrices(labels)
    assert list(om.study_ids) == list(truth.index)
    E = sp.csc_matrix(truth["exposed"].to_numpy(float)[:, None])
    split = np.full(N, "discovery")
    cfg = AssociationConfig(binary_controls=rule, exact_select="top", exact_top_m=1, min_exposed_cases=1)
    res = associate_splits({"image": (E, np.ones(1, bool), np.ones(N, bool))}, om, split, cfg)
    r = res[res["split"] == "discovery"].iloc[0]

    ref = _reference(truth, studies, events, rule)
    k, x, y = ref["keep"].to_numpy(bool), ref["exposed"].to_numpy(bool), ref["event"].to_numpy(bool)
    assert (r.n_exposed, r.n_exposed_cases) == ((x & k).sum(), (x & y & k).sum())
    assert (r.n_unexposed, r.n_unexposed_cases) == ((~x & k).sum(), (~x & y & k).sum())
    assert r.n_excluded_followup == (~k).sum() and r.n_exposed_excluded_followup == (x & ~k).sum()
    assert ((~k).sum() > 200) == (rule == "complete_followup")
    assert r.p_outcome_baseline == pytest.approx(y[k].mean(), rel=1e-12)
    D = np.column_stack([np.ones(k.sum()), ref["age"][k], ref["male"][k], x[k].astype(float)])
    fit = smapi.Logit(y[k].astype(float), D).fit(method="newton", tol=1e-14, disp=0)
    assert r.adj_method == "logistic"
    assert r.adj_log_or == pytest.approx(fit.params[-1], rel=1e-7)
    assert r.adj_p_value == pytest.approx(fit.pvalues[-1], rel=1e-6)
    a, b = (x & y & k).sum(), (x & ~y & k).sum()
    c, d = (~x & y & k).sum(), (~x & ~y & k).sum()
    assert r.odds_ratio == pytest.approx(a * d / (b * c), rel=1e-12)


def test_complete_followup_raises_risk_where_losses_hide_cases() -> None:
    """Exposed patients are lost more often, before their outcome could be seen: keeping
    them as controls understates P(outcome | cohort) and the baseline."""
    studies, events, _ = _planted()
    defs = OutcomeDefinitions(outcomes=(OutcomeDefinition(id="x", name="X", codes=("ICD10CM//X01",)),))
    om = outcome_matrices(outcome_labels(studies, events, defs, OutcomeSettings()))
    E = sp.csc_matrix(_planted()[2]["exposed"].to_numpy(float)[:, None])
    out = {}
    for rule in ("complete_followup", "all"):
        cfg = AssociationConfig(binary_controls=rule)
        res = associate_splits({"image": (E, np.ones(1, bool), np.ones(N, bool))}, om, np.full(N, "discovery"), cfg)
        out[rule] = res[res["split"] == "discovery"].iloc[0]
    full, every = out["complete_followup"], out["all"]
    assert full.p_outcome_exposed > every.p_outcome_exposed
    assert full.p_outcome_baseline > every.p_outcome_baseline
    assert every.n_excluded_followup == 0 and full.n_excluded_followup > 0
