from __future__ import annotations

import pandas as pd
import pytest

from data_contracts.config import OutcomeDefinition, OutcomeDefinitions, OutcomeSettings
from models.outcomes.labels import outcome_labels

T = pd.Timestamp


def _events() -> pd.DataFrame:
    rows = [
        # subject 1: incident liver cancer 1 year after the study
        (1, "1950-01-01", "MEDS_BIRTH"), (1, "1950-01-01", "GENDER//M"), (1, "2016-01-01", "ICD10CM//C22.0"),
        (1, "2022-01-01", "ENCOUNTER//OUTPATIENT"),
        # subject 2: prior case (same day as the study: counts as prior)
        (2, "1960-01-01", "MEDS_BIRTH"), (2, "1960-01-01", "GENDER//F"),
        (2, "2015-01-01 15:00", "ICD10CM//C22.1"),
        (2, "2022-01-01", "ENCOUNTER//OUTPATIENT"),
        # subject 3: event after the 4-year window; two studies
        (3, "1970-01-01", "MEDS_BIRTH"), (3, "2020-06-01", "ICD10CM//C22.0"),
        (3, "2023-01-01", "ENCOUNTER//OUTPATIENT"),
        # subject 4: dies 2 years after the study, no event; no birth record
        (4, "2017-01-01", "MEDS_DEATH"), (4, "2017-01-01", "GENDER//F"),
        # subject 5: last record 1 year after the study, alive: lost to follow-up
        (5, "1955-01-01", "MEDS_BIRTH"), (5, "2016-01-01", "ENCOUNTER//OUTPATIENT"),
    ]
    df = pd.DataFrame(rows, columns=["subject_id", "time", "code"])
    df["time"] = pd.to_datetime(df["time"], format="mixed").astype("datetime64[us]")
    df["numeric_value"] = float("nan")
    return df


def _studies() -> pd.DataFrame:
    return pd.DataFrame({
        "study_id": ["a", "b", "c1", "c2", "d", "e"],
        "subject_id": [1, 2, 3, 3, 4, 5],
        "study_time": pd.to_datetime(["2015-01-01 09:00", "2015-01-01 09:00", "2015-01-01", "2016-01-01",
                                      "2015-01-01", "2015-01-01"], format="mixed").astype("datetime64[us]"),
    })


def _labels(one_per_patient: bool = True) -> pd.DataFrame:
    defs = OutcomeDefinitions(outcomes=(OutcomeDefinition(id="lc", name="Liver cancer", codes=("ICD10CM//C22",)),))
    lab = outcome_labels(_studies(), _events(), defs, OutcomeSettings(one_study_per_patient=one_per_patient))
    return lab.set_index("study_id")


def test_incident_prior_window_and_censoring() -> None:
    lab = _labels()
    assert bool(lab.loc["a", "event"]) and lab.loc["a", "time_days"] == pytest.approx(365 - 0.375)
    assert bool(lab.loc["b", "prior"]) and not bool(lab.loc["b", "eligible"])
    assert "prior case" in lab.loc["b", "flag"]
    assert "outcome on index day (counted as prior)" in lab.loc["b", "flag"]
    # c1: event 5.4 years later -> outside the 4-year window, time capped at the window
    assert not bool(lab.loc["c1", "event"]) and lab.loc["c1", "time_days"] == pytest.approx(4 * 365.25)
    assert bool(lab.loc["c1", "complete_followup"])
    # d: death after 2 years censors follow-up; the status over the window is known (no
    # outcome can follow a death), so the follow-up counts as complete
    assert not bool(lab.loc["d", "event"]) and lab.loc["d", "time_days"] == pytest.approx(731)
    assert bool(lab.loc["d", "complete_followup"])
    # e: alive, last seen after 1 year: status unknown for the rest of the window
    assert not bool(lab.loc["e", "complete_followup"]) and lab.loc["e", "time_days"] == pytest.approx(365)
    assert pd.isna(lab.loc["d", "age_years"]) and "no birth record" in lab.loc["d", "flag"]
    assert lab.loc["a", "sex"] == "M" and lab.loc["a", "age_years"] == pytest.approx(65.0, abs=0.01)


def test_one_study_per_patient() -> None:
    lab = _labels()
    assert bool(lab.loc["c1", "eligible"]) and not bool(lab.loc["c2", "eligible"])
    assert "later study" in lab.loc["c2", "flag"]
    # c2 alone: event 4.4 years after 2016-01-01 -> outside the window as well
    lab_all = _labels(one_per_patient=False)
    assert bool(lab_all.loc["c2", "eligible"])


def _random_events(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n_sub, n_ev = 60, 3000
    codes = ["ICD10CM//C22.0", "ICD10CM//C22.1", "ICD10CM//C2", "ICD10CM//I50.9", "LAB//1", "MEDS_BIRTH", "GENDER//F"]
    ev = pd.DataFrame({"subject_id": rng.integers(0, n_sub, n_ev),
                       "time": pd.to_datetime(rng.integers(1.3e18, 1.7e18, n_ev)).astype("datetime64[us]"),
                       "code": rng.choice(codes, n_ev)})
    ev.loc[rng.uniform(size=n_ev) < 0.05, "time"] = pd.NaT  # static codes have no time
    st = pd.DataFrame({"study_id": [f"s{i:03d}" for i in range(80)], "subject_id": rng.integers(0, n_sub, 80),
                       "study_time": pd.to_datetime(rng.integers(1.4e18, 1.6e18, 80)).astype("datetime64[us]")})
    return ev, st


# Overlapping prefixes (C22 and C22.0 both match C22.0), a prefix matching nothing, two prefixes in one outcome.
DEFS = OutcomeDefinitions(outcomes=(
    OutcomeDefinition(id="liver", name="l", codes=("ICD10CM//C22",)),
    OutcomeDefinition(id="liver0", name="l0", codes=("ICD10CM//C22.0",)),
    OutcomeDefinition(id="nothing", name="n", codes=("ICD10CM//Z99",)),
    OutcomeDefinition(id="either", name="e", codes=("ICD10CM//I50", "ICD10CM//C2")),
))


@pytest.mark.parametrize("categorical", [False, True])
def test_onsets_in_one_pass_equal_one_outcome_at_a_time(categorical: bool) -> None:
    from models.outcomes.labels import first_onsets, onsets_by_outcome, undated_onsets

    ev, _ = _random_events(3)
    if categorical:  # how the task reads the events artifact
        ev = ev.assign(code=ev["code"].astype("category"))
    got, undated = onsets_by_outcome(ev, DEFS)
    plain = ev.assign(code=ev["code"].astype(object))
    for o in DEFS.outcomes:
        pd.testing.assert_series_equal(got[o.id], first_onsets(plain, o), check_names=False, check_index_type=False)
        assert set(undated[o.id]) == set(undated_onsets(plain, o))
    assert got["nothing"].empty and undated["nothing"].empty
    assert len(undated["either"]) > 0  # some records of the outcome have no time


def test_streamed_labels_equal_the_frame_and_patient_order_is_kept() -> None:
    from models.outcomes.labels import iter_outcome_labels

    ev, st = _random_events(5)
    settings = OutcomeSettings()
    parts = list(iter_outcome_labels(st, ev, DEFS, settings))
    assert [p["outcome_id"].iloc[0] for p in parts] == [o.id for o in DEFS.outcomes]
    whole = outcome_labels(st, ev, DEFS, settings)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    # one study per patient: the first eligible study of each patient, by time then id
    for oid, g in whole.groupby("outcome_id"):
        # studies the events contradict (before birth, after death or the data) are never eligible
        contradicted = g["flag"].fillna("").str.contains("study (?:before|after) the")
        assert contradicted.any()
        first = (g[~g["prior"] & ~contradicted].sort_values(["subject_id", "index_time", "study_id"])
                 .groupby("subject_id").head(1))
        assert set(g.loc[g["eligible"], "study_id"]) == set(first["study_id"]), oid


def _washout_labels(washout_days: float) -> pd.DataFrame:
    """Studies on 2015-01-01; by hand: w1 first diagnosed after 30 days, w2 after 200 days,
    w3 dies after 60 days, w4 dies after 2 years (no event), w5 diagnosed after 1 year and
    dies after 2, w6 dies after the 4-year window."""
    ev = [(s, "1950-01-01", "MEDS_BIRTH") for s in range(1, 7)] + [(s, "1950-01-01", "GENDER//F") for s in range(1, 7)]
    ev += [(1, "2015-01-31", "ICD10CM//C22.0"), (1, "2020-01-01", "ENCOUNTER//OUTPATIENT"),
           (2, "2015-07-20", "ICD10CM//C22.0"), (2, "2020-01-01", "ENCOUNTER//OUTPATIENT"),
           (3, "2015-03-02", "MEDS_DEATH"), (4, "2017-01-01", "MEDS_DEATH"),
           (5, "2016-01-01", "ICD10CM//C22.0"), (5, "2017-01-01", "MEDS_DEATH"),
           (6, "2019-06-01", "MEDS_DEATH")]
    df = pd.DataFrame(ev, columns=["subject_id", "time", "code"])
    df["time"] = pd.to_datetime(df["time"]).astype("datetime64[us]")
    df["numeric_value"] = float("nan")
    studies = pd.DataFrame({"study_id": [f"w{s}" for s in range(1, 7)], "subject_id": range(1, 7),
                            "study_time": pd.to_datetime(["2015-01-01"] * 6).astype("datetime64[us]")})
    defs = OutcomeDefinitions(outcomes=(OutcomeDefinition(id="lc", name="Liver cancer", codes=("ICD10CM//C22",)),))
    return outcome_labels(studies, df, defs, OutcomeSettings(washout_days=washout_days)).set_index("study_id")


def test_washout_excludes_early_diagnoses_and_early_ends() -> None:
    none, w90 = _washout_labels(0), _washout_labels(90)
    # without washout (the default) the 30-day diagnosis is incident
    assert bool(none.loc["w1", "event"]) and bool(none.loc["w1", "eligible"])
    assert none.loc["w1", "time_days"] == pytest.approx(30)
    assert not bool(w90.loc["w1", "event"]) and not bool(w90.loc["w1", "eligible"])
    assert "outcome within washout" in w90.loc["w1", "flag"]
    # after the washout: incident either way, time still from the index
    for lab in (none, w90):
        assert bool(lab.loc["w2", "event"]) and lab.loc["w2", "time_days"] == pytest.approx(200)
    # death at 60 days: within a 90-day washout the study leaves the analysis
    assert bool(none.loc["w3", "eligible"]) and bool(none.loc["w3", "competing_event"])
    assert not bool(w90.loc["w3", "eligible"]) and "follow-up ended within washout" in w90.loc["w3", "flag"]
    eligible = w90[w90["eligible"]]
    assert sorted(eligible.index) == ["w2", "w4", "w5", "w6"]
    assert not (eligible["event"] & (eligible["time_days"] <= 90)).any()  # nothing happens in the washout


def test_death_before_any_event_within_the_window_is_competing() -> None:
    lab = _washout_labels(0)
    assert bool(lab.loc["w4", "competing_event"]) and lab.loc["w4", "time_days"] == pytest.approx(731)
    assert not bool(lab.loc["w5", "competing_event"]) and bool(lab.loc["w5", "event"])  # event came first
    assert not bool(lab.loc["w6", "competing_event"])  # died after the window
    assert not lab.loc[["w1", "w2"], "competing_event"].any()
