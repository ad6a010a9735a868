from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung
from statsmodels.duration.hazard_regression import PHReg

from models.stats.survival import aalen_johansen, cox_fit, km_at, km_curve, survival_pair


def _pairs_data(seed: int = 0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    exposed = (rng.uniform(size=n) < 0.3).astype(int)
    age = rng.normal(60, 10, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    hazard = 0.0005 * np.exp(0.7 * exposed + 0.03 * (age - 60) + 0.2 * male)
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.uniform(200, 1461, n)
    return pd.DataFrame({"time_days": np.minimum(t_event, t_cens), "event": (t_event <= t_cens).astype(int),
                         "exposed": exposed, "age_years": age, "male": male})


def test_cox_matches_statsmodels_phreg() -> None:
    d = _pairs_data()  # continuous times: no ties, so Efron = Breslow
    row, _ = survival_pair(d, 1461.0, min_events=2)
    X = d[["exposed", "age_years", "male"]].to_numpy()
    ref = PHReg(d["time_days"], X, status=d["event"], ties="efron").fit()
    assert np.log(row["hazard_ratio"]) == pytest.approx(ref.params[0], rel=1e-5)
    se = (np.log(row["hr_ci_high"]) - np.log(row["hr_ci_low"])) / (2 * 1.959963984540054)
    assert se == pytest.approx(ref.bse[0], rel=1e-5)


def _km_reference(t: np.ndarray, e: np.ndarray, at: float) -> tuple[float, float, float]:
    """Product-limit estimate with Greenwood variance and the log(-log) 95% interval."""
    s, var = 1.0, 0.0
    for u in np.unique(t[(e == 1) & (t <= at)]):
        n_risk, d = (t >= u).sum(), ((t == u) & (e == 1)).sum()
        s *= 1 - d / n_risk
        var += d / (n_risk * (n_risk - d))
    se = np.sqrt(var) / abs(np.log(s))
    lo, hi = s ** np.exp(1.959963984540054 * se), s ** np.exp(-1.959963984540054 * se)
    return 1 - s, 1 - hi, 1 - lo


def test_km_cumulative_incidence_matches_numpy_reference() -> None:
    d = _pairs_data(1)
    ours = km_at(d["time_days"].to_numpy(), d["event"].to_numpy(), 1000.0)
    ref = _km_reference(d["time_days"].to_numpy(), d["event"].to_numpy(), 1000.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_km_curve_yearly_at_risk() -> None:
    d = _pairs_data(2)
    curve = km_curve(d, 3 * 365.25)
    years = curve[curve["year"].notna()]
    assert sorted(years.loc[years.group == "exposed", "year"]) == [0, 1, 2, 3]
    for r in years.itertuples():
        g = d[d.exposed == (1 if r.group == "exposed" else 0)]
        assert r.n_at_risk == (g.time_days >= r.time_days).sum()
    assert (curve.groupby("group")["cum_incidence"].apply(lambda s: s.is_monotonic_increasing)).all()


def test_too_few_events_is_a_flag() -> None:
    d = _pairs_data(3)
    d.loc[d.exposed == 1, "event"] = 0
    row, _ = survival_pair(d, 1461.0, min_events=2)
    assert np.isnan(row["hazard_ratio"]) and "Cox not fitted" in row["flag"]


def test_lung_cox_matches_published_r_values() -> None:
    """NCCTG lung: R `coxph(Surv(time, status) ~ age + sex, lung)` prints coef age 0.017045,
    sex -0.513219 (se 0.009223, 0.167458)."""
    lung = load_lung()
    assert set(lung["status"].unique()) == {0, 1}  # lifelines recodes R's 1/2
    summ = cox_fit(lung, "time", "status", ["age", "sex"])
    assert summ is not None
    assert summ.loc["age", "coef"] == pytest.approx(0.017045, abs=5e-7)
    assert summ.loc["sex", "coef"] == pytest.approx(-0.513219, abs=5e-7)
    assert summ.loc["age", "se(coef)"] == pytest.approx(0.009223, abs=5e-7)
    assert summ.loc["sex", "se(coef)"] == pytest.approx(0.167458, abs=5e-7)


def test_cox_small_strongly_associated_group_matches_reference() -> None:
    """A small exposed group with most events (where Newton steps overshoot easily) agrees
    with an independent damped-Newton partial-likelihood fit."""
    rng = np.random.default_rng(5)
    n = 985
    exposed = (np.arange(n) < 98).astype(int)
    age = rng.normal(62, 10, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    t_event = rng.exponential(np.where(exposed == 1, 5000.0, 150000.0))
    d = pd.DataFrame({"time_days": np.minimum(t_event, 1461.0), "event": (t_event <= 1461.0).astype(int),
                      "exposed": exposed, "age_years": age, "male": male})
    row, _ = survival_pair(d, 1461.0, min_events=2)
    ref = _cox_reference(d["time_days"].to_numpy(), d["event"].to_numpy(),
                         d[["exposed", "age_years", "male"]].to_numpy(float))
    assert d.loc[d.exposed == 0, "event"].sum() >= 3 and row["flag"] is None
    assert np.log(row["hazard_ratio"]) == pytest.approx(ref[0], rel=1e-5)


def _cox_reference(t: np.ndarray, e: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Damped Newton on the Cox partial likelihood (distinct times: no tie correction)."""
    order = np.argsort(-t)
    e, X = e[order], X[order] - X.mean(axis=0)

    def parts(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r = np.exp(X @ b)
        s0 = np.cumsum(r)
        s1 = np.cumsum(r[:, None] * X, axis=0)
        s2 = np.cumsum(r[:, None, None] * X[:, :, None] * X[:, None, :], axis=0)
        ev = e == 1
        ll = float(np.sum((X @ b)[ev] - np.log(s0[ev])))
        xbar = s1[ev] / s0[ev, None]
        grad = (X[ev] - xbar).sum(axis=0)
        info = (s2[ev] / s0[ev, None, None] - xbar[:, :, None] * xbar[:, None, :]).sum(axis=0)
        return ll, grad, info

    b = np.zeros(X.shape[1])
    for _ in range(100):
        ll, grad, info = parts(b)
        step = np.linalg.solve(info, grad)
        while parts(b + step)[0] < ll - 1e-12:
            step /= 2
        b = b + step
        if np.abs(step).max() < 1e-12:
            break
    return b


def test_cox_retries_after_a_convergence_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """lifelines can stop with a ConvergenceWarning at a wrong point (seen on the demo):
    such a fit is never used; a smaller step size is tried, and if that fails too, None."""
    import warnings
    from typing import ClassVar

    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceWarning

    import models.stats.survival as surv

    class Flaky(CoxPHFitter):  # type: ignore[misc]
        fail_steps: ClassVar[set[float]] = {0.95}

        def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            out = super().fit(*args, **kwargs)
            if kwargs["fit_options"]["step_size"] in self.fail_steps:
                warnings.warn("Newton-Raphson failed to converge sufficiently", ConvergenceWarning, stacklevel=2)
            return out

    monkeypatch.setattr(surv, "CoxPHFitter", Flaky)
    d = _pairs_data(4)
    summ = surv.lifelines_cox(d, "time_days", "event", ["exposed", "age_years", "male"])
    ref = PHReg(d["time_days"], d[["exposed", "age_years", "male"]].to_numpy(), status=d["event"]).fit()
    assert summ is not None and summ.loc["exposed", "coef"] == pytest.approx(ref.params[0], rel=1e-5)
    Flaky.fail_steps = {0.95, 0.1}
    assert surv.lifelines_cox(d, "time_days", "event", ["exposed", "age_years", "male"]) is None


def _quarantine_cohort(seed: int = 6, n: int = 800) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One study per patient; `feature` exposure raises the hazard; the image modality
    could not encode `quarantined` studies, which therefore are never in its cohorts."""
    rng = np.random.default_rng(seed)
    feature = rng.uniform(size=n) < 0.3
    age, male = rng.normal(60, 10, n), rng.uniform(size=n) < 0.5
    t_event = rng.exponential(1 / (0.0004 * np.exp(0.8 * feature + 0.02 * (age - 60))))
    t_cens = rng.uniform(300, 1461, n)
    lab = pd.DataFrame({"study_id": [f"s{i:04d}" for i in range(n)], "subject_id": np.arange(n),
                        "outcome_id": "o", "eligible": rng.uniform(size=n) < 0.95,
                        "event": t_event <= t_cens, "time_days": np.minimum(t_event, t_cens),
                        "age_years": age, "sex": np.where(male, "M", "F")})
    return lab, feature, rng.uniform(size=n) < 0.25


def test_survival_leaves_out_studies_the_modality_did_not_encode() -> None:
    """Quarantined studies are neither exposed nor controls of that modality (as in
    association), in both splits; counts, at-risk table, Cox and log-rank are checked
    against an independent analysis of the correctly filtered studies."""
    from statsmodels.duration.survfunc import survdiff

    from models.outcomes.population import population_arrays, study_population
    from models.stats.association import outcome_matrices
    from models.stats.survival import survival_hits

    lab, feature, quarantined = _quarantine_cohort()
    table = study_population(lab, {"image": lab["study_id"][~quarantined], "report": lab["study_id"]}, 0.5, 1)
    om = outcome_matrices(lab)
    pop = population_arrays(table, om.study_ids, om.subject_ids, ["image", "report"], "t")
    hits = pd.DataFrame({"modality": ["image", "report"], "unit": "feature", "feature_id": [0, 0], "outcome_id": "o",
                         "rank": 1})
    exposed = {"image": {("feature", 0): feature & ~quarantined}, "report": {("feature", 0): feature}}
    summary, curves = survival_hits(hits, exposed, om, pop, {"o": 1461.0}, min_events=2)
    assert len(summary) == 4 and summary["flag"].isna().all()
    for r in summary.itertuples():
        keep = lab["eligible"].to_numpy() & (pop.split == r.split)
        if r.modality == "image":
            assert (keep & quarantined).sum() > 20  # the bug counted these as controls
            keep &= ~quarantined
        d = lab[keep].assign(exposed=feature[keep].astype(int), male=lambda x: (x["sex"] == "M").astype(float))
        assert (r.n, r.n_exposed, r.n_events) == (len(d), d["exposed"].sum(), d["event"].sum())
        ref = PHReg(d["time_days"], d[["exposed", "age_years", "male"]].to_numpy(float),
                    status=d["event"].astype(int), ties="efron").fit()
        assert np.log(r.hazard_ratio) == pytest.approx(ref.params[0], rel=1e-5)
        assert r.logrank_p == pytest.approx(survdiff(d["time_days"], d["event"].astype(int), d["exposed"])[1],
                                            rel=1e-6)
        marks = curves[(curves["modality"] == r.modality) & (curves["split"] == r.split) & curves["year"].notna()]
        for m in marks.itertuples():
            g = d[d["exposed"] == (1 if m.group == "exposed" else 0)]
            assert m.n_at_risk == (g["time_days"] >= m.time_days).sum()


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_cox_equals_lifelines(ties: bool) -> None:
    """The vectorised Efron fit and lifelines' give the same estimate and SE (lifelines
    stops ~1e-9 short of the optimum), with and without tied times."""
    from models.stats.cox import efron_cox
    from models.stats.survival import lifelines_cox

    d = _pairs_data(7, n=1500)
    if ties:
        d["time_days"] = d["time_days"].round(-1)  # many events share a time: Efron's correction matters
        assert d.loc[d["event"] == 1, "time_days"].duplicated().sum() > 20
    cols = ["exposed", "age_years", "male"]
    ours = efron_cox(d["time_days"].to_numpy(), d["event"].to_numpy(), d[cols].to_numpy(float), cols)
    ref = lifelines_cox(d, "time_days", "event", cols)
    assert ours is not None and ref is not None
    for c in ("coef", "se(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%"):
        np.testing.assert_allclose(ours[c].to_numpy(), ref.loc[cols, c].to_numpy(), rtol=1e-7, err_msg=c)
    np.testing.assert_allclose(ours["p"].to_numpy(), ref.loc[cols, "p"].to_numpy(), rtol=1e-5)


def test_vectorised_cox_declines_separation() -> None:
    """Every exposed study has its event before any unexposed one: the likelihood grows
    without bound, no estimate; the fit says None (and cox_fit tries lifelines)."""
    from models.stats.cox import efron_cox

    n = 200
    exposed = (np.arange(n) < 20).astype(float)
    time = np.where(exposed == 1, np.arange(n) + 1.0, 500.0 + np.arange(n))
    event = np.ones(n, int)
    X = np.column_stack([exposed, np.random.default_rng(0).normal(size=n)])
    assert efron_cox(time, event, X, ["exposed", "age"]) is None


# ---------------------------------------------------------------- competing risks
def _competing(seed: int, n: int = 300) -> pd.DataFrame:
    """Continuous times (no ties): outcome hazard, a stronger death hazard, uniform censoring."""
    rng = np.random.default_rng(seed)
    t_event, t_death, t_cens = rng.exponential(3000, n), rng.exponential(1500, n), rng.uniform(100, 1461, n)
    t = np.minimum.reduce([t_event, t_death, t_cens])
    return pd.DataFrame({"time_days": t, "event": (t == t_event).astype(int),
                         "competing": (t == t_death).astype(int)})


def test_aalen_johansen_matches_lifelines() -> None:
    from lifelines import AalenJohansenFitter

    d = _competing(0)
    code = np.where(d["event"] == 1, 1, np.where(d["competing"] == 1, 2, 0))
    ref = AalenJohansenFitter(calculate_variance=False).fit(d["time_days"], code, event_of_interest=1)
    at = np.array([50.0, 365.25, 800.0, 1200.0, 1461.0])
    expect = ref.cumulative_density_.iloc[:, 0]
    want = [float(expect[expect.index <= t].iloc[-1]) for t in at]
    got = aalen_johansen(d["time_days"], d["event"] > 0, d["competing"] > 0, at)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_aalen_johansen_by_hand_with_ties() -> None:
    # times 1..5; at t=2 one outcome, one death and one censoring tie; at t=4 two outcomes
    t = np.array([1, 2, 2, 2, 3, 4, 4, 5, 6, 6], float)
    ev = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 0], bool)
    de = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    # n at risk: t1 10, t2 9, t3 6, t4 5; S(t-) before each: 1, 9/10, 9/10 * 7/9 = 0.7, 0.7 * 5/6
    f1 = 1 / 10
    f2 = f1 + 0.9 * 1 / 9
    f4 = f2 + (0.7 * 5 / 6) * 2 / 5
    got = aalen_johansen(t, ev, de, np.array([0.5, 1, 2, 3, 4, 6]))
    np.testing.assert_allclose(got, [0, f1, f2, f2, f4, f4], rtol=1e-14)


def test_survival_pair_reports_both_estimators() -> None:
    d = _competing(1, 600)
    d["exposed"] = (np.arange(len(d)) % 3 == 0).astype(int)
    d["age_years"], d["male"] = 60.0 + (np.arange(len(d)) % 20), (np.arange(len(d)) % 2).astype(float)
    row, curve = survival_pair(d, 1461.0, min_events=2)
    assert row["n_competing"] == int(d["competing"].sum())
    for g, x in (("exposed", 1), ("unexposed", 0)):
        sub = d[d["exposed"] == x]
        assert row[f"aj_cuminc_{g}"] == pytest.approx(
            aalen_johansen(sub["time_days"], sub["event"] > 0, sub["competing"] > 0, np.array([1461.0]))[0])
        # deaths censored, 1 - KM overstates the real risk where death competes
        assert row[f"aj_cuminc_{g}"] < row[f"cuminc_{g}"]
    assert (curve["aj_cum_incidence"] <= curve["cum_incidence"] + 1e-12).all()
    no_death, _ = survival_pair(d.assign(competing=0), 1461.0, min_events=2)
    assert no_death["aj_cuminc_exposed"] == pytest.approx(no_death["cuminc_exposed"], rel=1e-12)
