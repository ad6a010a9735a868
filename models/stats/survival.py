"""Time-to-event confirmation of top hits: Cox HR adjusted for age and sex, cumulative
incidence at the window, log-rank p and a yearly at-risk table.

Cumulative incidence two ways, side by side: 1 - Kaplan-Meier (with CI) censors deaths,
so where death competes it estimates the risk in a world without death and overstates
the real one; Aalen-Johansen counts death as a competing event (the outcome's
cumulative incidence function). The Cox HR is cause-specific: deaths are censored, so it
compares outcome hazards among those still alive, not risks.
Both use every eligible study, censored at its end of follow-up: restricting to studies
with complete follow-up would drop the censored non-cases and inflate the risk. The Cox
model uses the studies with age and sex recorded. Statistical trouble (too few events, a
fit that does not converge) becomes a flag, never an exception.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import logrank_test

from models.outcomes.population import Population
from models.stats.cox import efron_cox

YEAR_DAYS = 365.25
GROUPS = (("exposed", 1), ("unexposed", 0))


def cox_fit(df: pd.DataFrame, duration: str, event: str, covariates: list[str]) -> pd.DataFrame | None:
    """CoxPH (Efron ties) summary, or None when it cannot be fitted: the vectorised fit
    (models/stats/cox.py), and lifelines where that one does not converge."""
    fast = efron_cox(df[duration].to_numpy(np.float64), df[event].to_numpy(), df[covariates].to_numpy(np.float64),
                     list(covariates))
    return fast if fast is not None else lifelines_cox(df, duration, event, covariates)


def lifelines_cox(df: pd.DataFrame, duration: str, event: str, covariates: list[str]) -> pd.DataFrame | None:
    """lifelines CoxPH (Efron ties) summary, or None when it cannot be fitted.

    lifelines' Newton steps can overshoot on small, strongly associated groups and stop
    with a ConvergenceWarning at a wrong point; such a fit is retried with smaller steps
    and dropped (None) if it still does not converge. Precision 1e-12: lifelines' default
    stopping rule leaves ~1e-6 in the coefficients; R's coxph iterates further."""
    data = df[[duration, event, *covariates]]
    for step in (0.95, 0.1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cph = CoxPHFitter().fit(data, duration, event,
                                        fit_options={"precision": 1e-12, "step_size": step, "max_steps": 500})
            except (ConvergenceError, np.linalg.LinAlgError, ValueError):
                continue
        if not any(issubclass(w.category, ConvergenceWarning) for w in caught):
            return cph.summary
    return None


def km_at(time: np.ndarray, event: np.ndarray, t: float) -> tuple[float, float, float]:
    """Cumulative incidence 1 - S(t) with lifelines' 95% CI (log(-log) Greenwood)."""
    return _km_window(KaplanMeierFitter().fit(time, event), t)


def _km_window(kmf: KaplanMeierFitter, t: float) -> tuple[float, float, float]:
    s = float(kmf.survival_function_at_times(t).iloc[0])
    ci = kmf.confidence_interval_survival_function_
    row = ci[ci.index <= t].iloc[-1]
    return 1.0 - s, 1.0 - float(row.iloc[1]), 1.0 - float(row.iloc[0])


def aalen_johansen(time: np.ndarray, event: np.ndarray, competing: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cumulative incidence of `event` at times `at` with `competing` a competing event:
    F(t) = sum over event times u <= t of S(u-) d1(u) / n(u), S the all-cause Kaplan-Meier
    (event or competing), n the number at risk (time >= u), d1 the events at u. Tied
    events of both kinds at one time are handled exactly (no jitter)."""
    time = np.asarray(time, np.float64)
    e1 = np.asarray(event, bool)
    e2 = np.asarray(competing, bool) & ~e1
    u = np.unique(time[e1 | e2])
    srt = np.sort(time)
    n = len(time) - np.searchsorted(srt, u, side="left")
    d1 = np.bincount(np.searchsorted(u, time[e1]), minlength=len(u))
    d2 = np.bincount(np.searchsorted(u, time[e2]), minlength=len(u))
    s_after = np.cumprod(1.0 - (d1 + d2) / np.maximum(n, 1))
    s_before = np.concatenate([[1.0], s_after[:-1]])
    F = np.cumsum(s_before * d1 / np.maximum(n, 1))
    idx = np.searchsorted(u, np.asarray(at, np.float64), side="right") - 1
    return np.where(idx >= 0, F[np.maximum(idx, 0)] if len(F) else 0.0, 0.0)


def survival_pair(d: pd.DataFrame, window_days: float, min_events: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """One pair. `d` columns: time_days, event, exposed (0/1), age_years, male (nullable),
    competing (0/1: follow-up ended by death; optional, else none).
    Returns (summary row, curve rows)."""
    flags: list[str] = []
    d = d if "competing" in d.columns else d.assign(competing=0)
    ev_exp = int(d.loc[d["exposed"] == 1, "event"].sum())
    row: dict[str, Any] = {"n": len(d), "n_exposed": int(d["exposed"].sum()), "n_events": int(d["event"].sum()),
                           "n_exposed_events": ev_exp, "n_competing": int(d["competing"].sum())}
    row.update(_cox_row(d, ev_exp, min_events, flags))
    fits = _km_groups(d)
    for name, _ in GROUPS:
        ci = _km_window(fits[name][1], window_days) if name in fits else (np.nan,) * 3
        row.update({f"cuminc_{name}": ci[0], f"cuminc_{name}_low": ci[1], f"cuminc_{name}_high": ci[2]})
        sub = fits[name][0] if name in fits else None
        row[f"aj_cuminc_{name}"] = np.nan if sub is None else float(aalen_johansen(
            sub["time_days"].to_numpy(), sub["event"].to_numpy() > 0, sub["competing"].to_numpy() > 0,
            np.array([window_days]))[0])
    both = (d["exposed"] == 1).any() and (d["exposed"] == 0).any()
    row["logrank_p"] = _logrank(d) if both and d["event"].any() else np.nan
    row["flag"] = "; ".join(flags) or None
    return row, km_curve(d, window_days, fits)


def _cox_row(d: pd.DataFrame, ev_exp: int, min_events: int, flags: list[str]) -> dict[str, Any]:
    nan = {"hazard_ratio": np.nan, "hr_ci_low": np.nan, "hr_ci_high": np.nan, "hr_p": np.nan}
    cov = d.dropna(subset=["age_years", "male"])
    if len(cov) < len(d):
        flags.append(f"{len(d) - len(cov)} studies without age/sex left out of Cox")
    if ev_exp < min_events or cov["event"].sum() - ev_exp < min_events:
        flags.append(f"Cox not fitted: fewer than {min_events} events in a group")
        return nan
    summ = cox_fit(cov.astype(float), "time_days", "event", ["exposed", "age_years", "male"])
    vals = None if summ is None else summ.loc["exposed", ["exp(coef)", "exp(coef) lower 95%",
                                                        "exp(coef) upper 95%", "p"]].to_numpy(np.float64)
    if vals is None or not np.isfinite(vals[0]):
        flags.append("Cox did not converge")
        return nan
    return dict(zip(["hazard_ratio", "hr_ci_low", "hr_ci_high", "hr_p"], map(float, vals), strict=True))


def _logrank(d: pd.DataFrame) -> float:
    e, u = d[d["exposed"] == 1], d[d["exposed"] == 0]
    res = logrank_test(e["time_days"], u["time_days"], e["event"], u["event"])
    return float(res.p_value)


def _km_groups(d: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, KaplanMeierFitter]]:
    """Each non-empty group's rows and Kaplan-Meier fit, in GROUPS order."""
    fits = {}
    for name, g in GROUPS:
        sub = d[d["exposed"] == g]
        if len(sub):
            fits[name] = (sub, KaplanMeierFitter().fit(sub["time_days"].to_numpy(), sub["event"].to_numpy()))
    return fits


def km_curve(d: pd.DataFrame, window_days: float,
             fits: dict[str, tuple[pd.DataFrame, KaplanMeierFitter]] | None = None) -> pd.DataFrame:
    """Step points of each group's cumulative incidence plus yearly marks (with `year` and
    the number at risk: durations >= t), ready for plotting. `fits`: _km_groups(d), if
    already made."""
    frames = []
    years = np.arange(0, int(np.floor(window_days / YEAR_DAYS)) + 1)
    for name, (sub, kmf) in (_km_groups(d) if fits is None else fits).items():
        ci = kmf.confidence_interval_survival_function_
        times = np.union1d(kmf.timeline[kmf.timeline <= window_days], years * YEAR_DAYS)
        idx = np.searchsorted(kmf.timeline, times, side="right") - 1
        s = kmf.survival_function_.iloc[:, 0].to_numpy()
        lo, hi = ci.iloc[:, 0].to_numpy(), ci.iloc[:, 1].to_numpy()
        safe = np.maximum(idx, 0)
        at = np.sort(sub["time_days"].to_numpy())
        year = np.round(times / YEAR_DAYS)
        is_year = np.isclose(times, year * YEAR_DAYS)
        comp = sub["competing"].to_numpy() > 0 if "competing" in sub.columns else np.zeros(len(sub), bool)
        frames.append(pd.DataFrame({
            "group": name, "time_days": times,
            "cum_incidence": np.where(idx >= 0, 1 - s[safe], 0.0),
            "aj_cum_incidence": aalen_johansen(sub["time_days"].to_numpy(), sub["event"].to_numpy() > 0, comp, times),
            "ci_low": np.where(idx >= 0, 1 - hi[safe], 0.0), "ci_high": np.where(idx >= 0, 1 - lo[safe], 0.0),
            "n_at_risk": len(at) - np.searchsorted(at, times, side="left"),
            "year": pd.array(np.where(is_year, year, np.nan), dtype="Int32"),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["group", "time_days", "cum_incidence", "aj_cum_incidence", "ci_low", "ci_high", "n_at_risk", "year"])


def top_hits(assoc: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` best-ranked discovery pairs per (modality, outcome), features and
    families alike (they share one ranking)."""
    ranked = assoc[(assoc["split"] == "discovery") & assoc["rank"].notna() & (assoc["rank"] <= top)]
    return ranked[["modality", "unit", "feature_id", "outcome_id", "rank"]].reset_index(drop=True)


def survival_hits(
    hits: pd.DataFrame, exposed: dict[str, dict[tuple[str, int], np.ndarray]], om: Any, pop: Population,
    windows_days: dict[str, float], min_events: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Survival rows and KM curve rows of every hit in every split.

    exposed: modality -> (unit, feature_id) -> bool mask over om.study_ids; om: OutcomeMatrices; pop:
    the split and encoded studies over om.study_ids, as association used them. A study the
    hit's modality did not encode is neither exposed nor a control."""
    rows, curves = [], []
    o_index = pd.Index(om.outcome_ids)
    for h in hits.to_dict("records"):
        o = o_index.get_loc(h["outcome_id"])
        window = windows_days[h["outcome_id"]]
        for name in ("discovery", "validation"):
            m = om.M[:, o] & (pop.split == name) & pop.encoded[h["modality"]]
            d = pd.DataFrame({"time_days": om.T[m, o], "event": om.Y[m, o].astype(int),
                              "competing": om.competing[m, o].astype(int),
                              "exposed": exposed[h["modality"]][(h["unit"], int(h["feature_id"]))][m].astype(int),
                              "age_years": om.age[m], "male": om.male[m]})
            key = {"modality": h["modality"], "unit": h["unit"], "feature_id": h["feature_id"],
                   "outcome_id": h["outcome_id"], "split": name}
            summ, curve = survival_pair(d, window, min_events)
            rows.append({**key, "rank": h["rank"], "window_years": window / YEAR_DAYS, **summ})
            curves.append(curve.assign(**key))
    cols = ["modality", "unit", "feature_id", "outcome_id", "split"]
    summary = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*cols, "rank", "window_years", "n"])
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=[*cols, "group"])
    return summary, curve_df
