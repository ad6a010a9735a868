"""Benchmark: the OR-per-SD fits (outcome ~ standardised activation + age + sex) vs statsmodels.

Synthetic: 200,000 studies, 20 features firing in ~7% of studies with a long right tail
(lognormal), 10 outcomes (~2% cases) that depend on age, sex and some activations: 200
pairs. Times models.stats.activation_sd.fit_per_sd on all pairs and a statsmodels Logit loop
(standardising the same way) on a sample, in the same process. Prints JSON lines; the
last line is the summary object.

    .venv/bin/python benchmarks/or_per_sd.py [--studies 200000 --sm-pairs 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp
import statsmodels.api as smapi

from models.stats.activation_sd import fit_per_sd
from models.stats.score_test import covariate_design


def synthetic(n: int, n_f: int, n_o: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    age, male = rng.normal(60, 12, n), (rng.uniform(size=n) < 0.5).astype(float)
    A = np.where(rng.uniform(size=(n, n_f)) < 0.07, rng.lognormal(0.5, 0.5, (n, n_f)), 0.0)
    effect = rng.normal(0, 0.4, (n_f, n_o)) * (rng.uniform(size=(n_f, n_o)) < 0.3)
    eta = -4.2 + 0.04 * (age - 60)[:, None] + 0.3 * male[:, None] + A @ effect
    Y = rng.uniform(size=(n, n_o)) < 1 / (1 + np.exp(-eta))
    M = rng.uniform(size=(n, n_o)) < 0.95
    return sp.csc_matrix(A), Y, M, age, male


def statsmodels_fit(x: np.ndarray, y: np.ndarray, Z: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    v = x[rows]
    D = np.column_stack([Z[rows], (v - v.mean()) / v.std(ddof=1)])
    fit = smapi.Logit(y[rows].astype(float), D).fit(method="newton", tol=1e-12, disp=0)
    return float(fit.params[-1]), float(fit.bse[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--studies", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--outcomes", type=int, default=10)
    ap.add_argument("--sm-pairs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    A, Y, M, age, male = synthetic(a.studies, a.features, a.outcomes, a.seed)
    Z = covariate_design(age, male)
    pairs = np.array([(f, o) for o in range(a.outcomes) for f in range(a.features)])
    t0 = time.perf_counter()
    res = fit_per_sd(A, Z, Y, M, pairs)
    ours = (time.perf_counter() - t0) / len(pairs)
    print(json.dumps({"stage": "ours", "pairs": len(pairs), "seconds_per_pair": ours,
                      "fitted": int(res["sd_log_or"].notna().sum())}), flush=True)
    sample = np.random.default_rng(a.seed).choice(len(pairs), a.sm_pairs, replace=False)
    dense = {f: A[:, f].toarray()[:, 0] for f in np.unique(pairs[sample, 0])}
    t0 = time.perf_counter()
    ref = [statsmodels_fit(dense[f], Y[:, o], Z, M[:, o]) for f, o in pairs[sample]]
    sm = (time.perf_counter() - t0) / len(sample)
    b = np.array([r[0] for r in ref])
    se = np.array([r[1] for r in ref])
    print(json.dumps({
        "pairs": len(pairs), "studies": a.studies, "ours_seconds_per_pair": ours,
        "statsmodels_seconds_per_pair": sm, "speedup_vs_statsmodels": sm / ours,
        "max_abs_diff_log_or": float(np.max(np.abs(res["sd_log_or"].to_numpy()[sample] - b))),
        "max_rel_diff_se": float(np.max(np.abs(res["sd_se"].to_numpy()[sample] / se - 1))),
    }), flush=True)


if __name__ == "__main__":
    main()
