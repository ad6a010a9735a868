"""Outcome labels per study from MEDS events.

Index date = study time. For each outcome (code prefixes):
- prior: the outcome's first record falls on or before the index *day* (same-day records
  count as prior: a diagnosis coded the day of the scan was known at the scan), and such
  studies are excluded when the definition says so;
- washout (`washout_days`, default 0): a first record after the index day but within the
  washout was most likely present, undiagnosed, at the scan; such studies are excluded, as
  are (washout > 0) studies whose follow-up ends within the washout. Time still runs from
  the index, so no event and no censoring falls inside the washout;
- event: first record after the index day (and after the washout) and within the window
  (default 4 years);
- follow-up ends at death, the patient's last record, or the end of the data;
- complete_followup: the outcome status over the whole window is known: an event, follow-up
  reaching the window's end, or death within the window without the outcome (a death ends
  the window: the outcome can no longer occur, so the study is a known non-case). Studies
  lost to follow-up before the window's end without an event are not complete; binary
  analyses leave them out of the controls (association.binary_controls);
- time_days: to the event, else to the end of follow-up, capped at the window;
- competing_event: follow-up ended by death within the window before any event (for
  Aalen-Johansen cumulative incidence);
- one study per patient per outcome by default: the first eligible one, so patients with
  many scans do not count several times;
- a record of the outcome without a date (MEDS allows null times) counts as prior: it cannot
  be placed after the study;
- studies the events contradict are flagged and not eligible: after the end of the data
  (a future or mistyped study time), before the patient's birth or after the death; a
  patient with no MEDS events at all is flagged (no follow-up, no age, no sex).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
import pandas as pd

from data_contracts.config import OutcomeDefinition, OutcomeDefinitions, OutcomeSettings

DAY = pd.Timedelta(days=1)


def subject_table(events: pd.DataFrame, settings: OutcomeSettings) -> pd.DataFrame:
    """Per subject: birth, sex, death and last record times from MEDS codes."""
    ev = events[["subject_id", "time", "code"]]
    timed = ev.dropna(subset=["time"])
    birth = timed[timed["code"] == settings.birth_code].groupby("subject_id")["time"].min()
    death = timed[timed["code"] == settings.death_code].groupby("subject_id")["time"].min()
    last = timed.groupby("subject_id")["time"].max()
    female = ev[ev["code"].isin(settings.female_codes)].groupby("subject_id").size()
    male = ev[ev["code"].isin(settings.male_codes)].groupby("subject_id").size()
    subj = pd.DataFrame({"birth": birth, "death": death, "last_record": last})
    sex = pd.Series(pd.NA, index=subj.index.union(female.index).union(male.index), dtype="string")
    sex[sex.index.isin(female.index)] = "F"
    sex[sex.index.isin(male.index)] = "M"
    sex[sex.index.isin(female.index) & sex.index.isin(male.index)] = pd.NA  # conflicting codes
    return subj.join(sex.rename("sex"), how="outer")


def first_onsets(events: pd.DataFrame, outcome: OutcomeDefinition) -> pd.Series:
    """Time of each subject's first record of the outcome (subject_id -> time)."""
    hit = events["code"].str.startswith(tuple(outcome.codes), na=False) & events["time"].notna()
    return events.loc[hit].groupby("subject_id")["time"].min()


def undated_onsets(events: pd.DataFrame, outcome: OutcomeDefinition) -> pd.Index:
    """Subjects with a record of the outcome that has no time."""
    hit = events["code"].str.startswith(tuple(outcome.codes), na=False) & events["time"].isna()
    return pd.Index(events.loc[hit, "subject_id"].unique())


def onsets_by_outcome(events: pd.DataFrame, outcomes: OutcomeDefinitions
                      ) -> tuple[dict[str, pd.Series], dict[str, pd.Index]]:
    """`first_onsets` and `undated_onsets` of every outcome in one pass over the events:
    each distinct code is matched against the prefixes once (a hospital has ~10 M events
    but few thousand codes), then one group-by over the matching events gives every first
    onset and the subjects with an undated record."""
    codes, uniques = pd.factorize(events["code"])
    names = pd.Series(np.asarray(uniques, dtype=object))
    match = np.zeros((len(names), len(outcomes.outcomes)), bool)
    for j, o in enumerate(outcomes.outcomes):
        match[:, j] = names.str.startswith(tuple(o.codes), na=False).to_numpy(bool)
    pair_code, pair_outcome = np.nonzero(match)  # (distinct code, outcome) pairs that match
    any_match = np.asarray(match.any(axis=1), bool)
    rows = np.flatnonzero((codes >= 0) & any_match[np.maximum(codes, 0)])
    hits = pd.DataFrame({"code": codes[rows], "row": rows}).merge(
        pd.DataFrame({"code": pair_code, "outcome": pair_outcome}), on="code")
    at = hits["row"].to_numpy()
    found = pd.DataFrame({"outcome": hits["outcome"].to_numpy(), "subject_id": events["subject_id"].to_numpy()[at],
                          "time": events["time"].to_numpy()[at]})
    dated = found["time"].notna().to_numpy()
    first = found[dated].groupby(["outcome", "subject_id"])["time"].min()
    empty = events.iloc[0:0].groupby("subject_id")["time"].min()
    by_outcome = {int(cast(int, k)): g.droplevel("outcome") for k, g in first.groupby(level="outcome", sort=False)}
    nodate = {int(cast(int, k)): pd.Index(g.unique()) for k, g in found[~dated].groupby("outcome")["subject_id"]}
    return ({o.id: by_outcome.get(i, empty) for i, o in enumerate(outcomes.outcomes)},
            {o.id: nodate.get(i, pd.Index([])) for i, o in enumerate(outcomes.outcomes)})


def _study_problems(base: pd.DataFrame, data_end: pd.Timestamp, known: pd.Index) -> tuple[pd.Series, pd.Series]:
    """(flags, contradicted) per study: what the events say about the study itself."""
    day = base["index_time"].dt.normalize()
    rules = [
        (base["index_time"] > data_end, "study after the end of the data (future study time?)", True),
        (day < base["birth"].dt.normalize(), "study before the patient's birth", True),
        (day > base["death"].dt.normalize(), "study after the patient's death", True),
        (~base["subject_id"].isin(known), "no MEDS events for the patient", False),
    ]
    flags = pd.Series("", index=base.index, dtype=object)
    contradicted = pd.Series(False, index=base.index)
    for mask, text, fatal in rules:
        mask = mask.fillna(False).astype(bool)
        flags[mask] += text + ";"
        if fatal:
            contradicted |= mask
    return flags, contradicted


def outcome_labels(
    studies: pd.DataFrame,
    events: pd.DataFrame,
    outcomes: OutcomeDefinitions,
    settings: OutcomeSettings,
) -> pd.DataFrame:
    """One row per study x outcome (OUTCOME_LABELS contract)."""
    return pd.concat(list(iter_outcome_labels(studies, events, outcomes, settings)), ignore_index=True)


def iter_outcome_labels(
    studies: pd.DataFrame,
    events: pd.DataFrame,
    outcomes: OutcomeDefinitions,
    settings: OutcomeSettings,
) -> Iterator[pd.DataFrame]:
    """`outcome_labels` one outcome at a time (a study's rows of that outcome), so a
    writer can stream 300 outcomes x 200,000 studies without holding them."""
    subj = subject_table(events, settings)
    data_end = events["time"].max()
    base = studies[["study_id", "subject_id", "study_time"]].rename(columns={"study_time": "index_time"})
    base = base.join(subj, on="subject_id")
    end = pd.concat([base["death"], base["last_record"]], axis=1).min(axis=1).fillna(base["index_time"])
    base["followup_end"] = end.clip(upper=data_end)
    base["age_years"] = (base["index_time"] - base["birth"]).dt.days / 365.25
    base["_problems"], base["_contradicted"] = _study_problems(base, data_end, subj.index)
    onsets, undated = onsets_by_outcome(events, outcomes)
    # The patient order of the one-study-per-patient rule is the same for every outcome.
    order = np.lexsort((base["study_id"].to_numpy(), base["index_time"].to_numpy(), base["subject_id"].to_numpy()))
    for o in outcomes.outcomes:
        yield _label_one(base, onsets[o.id], undated[o.id], o, settings, order)


def _label_one(
    base: pd.DataFrame, onset: pd.Series, undated: pd.Index, o: OutcomeDefinition, settings: OutcomeSettings,
    order: np.ndarray | None = None,
) -> pd.DataFrame:
    df = base.copy()
    df["outcome_id"] = o.id
    first = df["subject_id"].map(onset)
    index_day = df["index_time"].dt.normalize()
    df["_undated"] = df["subject_id"].isin(undated)
    prior = (first.notna() & (first.dt.normalize() <= index_day)) | df["_undated"]
    window_end = df["index_time"] + pd.to_timedelta(o.window_years * 365.25, unit="D")
    washout_end = df["index_time"] + pd.to_timedelta(settings.washout_days, unit="D")
    # a first record after the index day but within the washout: present, undiagnosed at the scan
    in_washout = first.notna() & ~prior & (first <= washout_end)
    event = first.notna() & ~prior & ~in_washout & (first <= window_end)
    stop = df["followup_end"].where(df["followup_end"] < window_end, window_end)
    stop = first.where(event, stop)
    df["prior"] = prior
    df["_same_day"] = first.notna() & (first.dt.normalize() == index_day)
    df["_in_washout"] = in_washout
    df["_washout_cut"] = (settings.washout_days > 0) & ~in_washout & (df["followup_end"] <= washout_end)
    df["event"] = event
    df["time_days"] = ((stop - df["index_time"]).dt.total_seconds() / DAY.total_seconds()).clip(lower=0.0)
    died = df["death"].notna() & (df["death"] >= df["index_time"]) & (df["death"] <= window_end)
    df["complete_followup"] = event | died | (df["followup_end"] >= window_end)
    # death ended follow-up before any event, within the window: a competing event
    df["competing_event"] = (~event & df["death"].notna() & (df["death"] == df["followup_end"])
                             & (df["death"] > df["index_time"]) & (df["death"] <= window_end))
    eligible = ~prior if o.exclude_prior else pd.Series(True, index=df.index)
    eligible = eligible & ~in_washout & ~df["_washout_cut"]
    df["eligible"], df["flag"] = _eligibility(df, eligible & ~df["_contradicted"], settings, order)
    cols = ["study_id", "subject_id", "outcome_id", "index_time", "prior", "eligible", "event",
            "time_days", "complete_followup", "competing_event", "age_years", "sex", "flag"]
    return df[cols]


def _eligibility(
    df: pd.DataFrame, eligible: pd.Series, settings: OutcomeSettings, order: np.ndarray | None = None
) -> tuple[pd.Series, pd.Series]:
    """`order`: row positions sorted by (subject, index time, study), if already known."""
    flags = df["_problems"].astype(object).copy()
    flags[df["prior"]] += "prior case;"
    flags[df["_undated"]] += "outcome recorded without a date (counted as prior);"
    flags[df["_same_day"]] += "outcome on index day (counted as prior);"
    flags[df["_in_washout"]] += "outcome within washout (present at index: excluded);"
    flags[df["_washout_cut"]] += "follow-up ended within washout (excluded);"
    flags[df["birth"].isna()] += "no birth record;"
    flags[df["sex"].isna()] += "no sex record;"
    flags[df["time_days"] <= 0] += "no follow-up after index;"
    eligible = eligible.copy()
    if settings.one_study_per_patient:
        if order is None:
            order = np.lexsort((df["study_id"].to_numpy(), df["index_time"].to_numpy(), df["subject_id"].to_numpy()))
        pos = order[eligible.to_numpy(bool)[order]]  # eligible rows in patient order
        first = pos[~pd.Series(df["subject_id"].to_numpy()[pos]).duplicated().to_numpy()]
        is_first = np.zeros(len(df), bool)
        is_first[first] = True
        later = eligible & ~is_first
        flags[later] += "later study of patient;"
        eligible &= ~later
    flags = flags.str.rstrip(";")
    flags = flags.where(flags != "")
    return eligible, flags
