"""Benchmark: screen every feature x outcome pair, and exact adjusted fits vs statsmodels.

Synthetic cohort: 200,000 studies, 8,192 features (20 active per study), 300 outcomes with
age, sex and some feature effects. Times the full screen (2x2 counts, Fisher, age+sex
adjusted score test with its per-outcome null models and their moments, BH) over all
pairs, then on 200 random pairs (without a zero cell, so that an ML estimate exists) our
exact fits against a statsmodels Logit loop, in the same process. Both sides pay their
full cost: ours fits the outcomes' null models and their moments before the pairs (what a
standalone fit costs; the pipeline already has them from the screen, and that marginal
cost is reported too), statsmodels fits each model from scratch. log-OR, SE and Wald p are
compared. Prints JSON lines; the last line is the summary object.

    .venv/bin/python benchmarks/associate.py [--studies 200000 --features 8192 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import statsmodels.api as smapi

from models.stats.association import screen_arrays
from models.stats.exact import fit_pairs
from models.stats.fast_logistic import moments, prepare
from models.stats.logistic import fit_batch
from models.stats.score_test import covariate_design
from models.stats.screen import bh_qvalues


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def synthetic(n: int, n_f: int, k: int, n_o: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), k)
    cols = rng.integers(0, n_f, n * k)
    E = sp.csc_matrix((np.ones(n * k), (rows, cols)), shape=(n, n_f))
    E.data[:] = 1.0  # a repeated draw is one activation
    age = rng.normal(63, 11, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    prev = np.exp(rng.uniform(np.log(0.002), np.log(0.1), n_o))
    hit = rng.integers(0, n_f, n_o)  # one planted feature per outcome
    Y = np.zeros((n, n_o), bool)
    for lo in range(0, n_o, 25):  # blocks keep the float64 temporaries small
        o = slice(lo, min(n_o, lo + 25))
        eta = (np.log(prev[o] / (1 - prev[o]))[None, :] + 0.03 * (age - 63)[:, None] + 0.2 * male[:, None]
               + E[:, hit[o]].toarray())
        Y[:, o] = rng.uniform(size=eta.shape) < 1 / (1 + np.exp(-eta))
    M = rng.uniform(size=(n, n_o)) > 0.05  # prior cases excluded
    return E, Y, M, age, male


def sample_pairs(arr: dict, n_pairs: int, seed: int, per_outcome: int | None = None) -> np.ndarray:
    """Random pairs without a zero cell; with `per_outcome`, that many pairs from each of
    n_pairs / per_outcome random outcomes (the pipeline's top-M-per-outcome pattern)."""
    rng = np.random.default_rng(seed)
    ok = np.argwhere(np.minimum.reduce([arr["a"], arr["b"], arr["c"], arr["d"]]) > 0)
    if per_outcome:
        outs = rng.choice(np.unique(ok[:, 1]), size=max(1, n_pairs // per_outcome), replace=False)
        ok = np.vstack([ok[ok[:, 1] == o][rng.permutation(int((ok[:, 1] == o).sum()))[:per_outcome]]
                        for o in outs])
        return ok
    return ok[rng.choice(len(ok), size=min(n_pairs, len(ok)), replace=False)]


def ours_full(E, Y, M, Z, pairs: np.ndarray) -> pd.DataFrame:
    """Exact fits paying everything: the pairs' outcomes' null models, their moments, then
    the pairs (the pipeline's path: null start, fast path where its bound holds)."""
    outs = np.unique(pairs[:, 1])
    null = fit_batch(Z, (Y[:, outs] & M[:, outs]).astype(np.float64), weights=M[:, outs].astype(np.float64))
    params = np.zeros((Y.shape[1], Z.shape[1]))
    params[outs] = null.params
    prep = prepare(Z)
    moms: list = [None] * Y.shape[1]
    if prep is not None:
        for j, o in enumerate(outs):
            if null.converged[j]:
                w = M[prep.order, o].astype(np.float64)
                moms[o] = moments(prep, Y[prep.order, o] * w, w, params[o])
    return fit_pairs(E, Z, Y, M, pairs, firth=False, null=params[pairs[:, 1]], moments_given=moms)


def exact_vs_statsmodels(E, Y, M, Z, arr, pairs: np.ndarray) -> dict:
    pairs = pairs[np.argsort(pairs[:, 1], kind="stable")]
    t0 = time.perf_counter()
    ours = ours_full(E, Y, M, Z, pairs)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    marginal = fit_pairs(E, Z, Y, M, pairs, firth=False, null=arr["null_params"][pairs[:, 1]],
                         moments_given=arr["moments"])
    t_marginal = time.perf_counter() - t0
    Ecsc, ref = sp.csc_matrix(E), []
    t0 = time.perf_counter()
    for f, o in pairs:
        rows = M[:, o]
        x = Ecsc[:, f].toarray()[rows, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = smapi.Logit(Y[rows, o].astype(float), np.column_stack([Z[rows], x])).fit(disp=0)
        ref.append((r.params[-1], r.bse[-1], r.pvalues[-1]))
    t_sm = time.perf_counter() - t0
    sm = np.array(ref)
    got = ours[["adj_log_or", "adj_se", "adj_p_value"]].to_numpy()
    rel_p = np.abs(got[:, 2] - sm[:, 2]) / np.maximum(sm[:, 2], 1e-300)
    return {"n_pairs": len(pairs), "ours_s": t_ours, "ours_marginal_s": t_marginal, "sm_s": t_sm,
            "max_abs_diff_log_or": float(np.max(np.abs(got[:, 0] - sm[:, 0]))),
            "max_abs_diff_se": float(np.max(np.abs(got[:, 1] - sm[:, 1]))),
            "max_rel_diff_p": float(np.max(rel_p)),
            "same_as_marginal": bool(np.allclose(got, marginal[["adj_log_or", "adj_se", "adj_p_value"]].to_numpy(),
                                                 rtol=1e-9, atol=1e-12))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=8192)
    ap.add_argument("--active", type=int, default=20)
    ap.add_argument("--outcomes", type=int, default=300)
    ap.add_argument("--exact-pairs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    emit(event="start", **vars(a), load=os.getloadavg(), cpus=os.cpu_count())
    t0 = time.perf_counter()
    E, Y, M, age, male = synthetic(a.studies, a.features, a.active, a.outcomes, a.seed)
    Z = covariate_design(age, male)
    emit(event="synthetic", seconds=time.perf_counter() - t0, nnz=int(E.nnz))
    t0, c0 = time.perf_counter(), time.process_time()
    arr = screen_arrays(E, Z, Y, M, np.ones(a.studies, bool))
    q, q_adj = bh_qvalues(arr["p_value"].ravel()), bh_qvalues(arr["score_p"].ravel())
    t_screen = time.perf_counter() - t0
    emit(event="screen", seconds=t_screen, cpu_seconds=time.process_time() - c0,
         pairs=int(arr["a"].size), tested=int(np.isfinite(arr["p_value"]).sum()),
         fdr_hits=int((q < 0.05).sum()), adjusted_fdr_hits=int((q_adj < 0.05).sum()))
    ex = exact_vs_statsmodels(E, Y, M, Z, arr, sample_pairs(arr, a.exact_pairs, a.seed))
    emit(event="exact", sampling="random pairs (about one per outcome)", **ex)
    grouped = exact_vs_statsmodels(E, Y, M, Z, arr, sample_pairs(arr, a.exact_pairs, a.seed, per_outcome=20))
    emit(event="exact", sampling="20 pairs in each of 10 random outcomes (top-M pattern)", **grouped)
    per_ours, per_sm = ex["ours_s"] / ex["n_pairs"], ex["sm_s"] / ex["n_pairs"]
    emit(pairs=int(arr["a"].size), seconds_screen_all_pairs=round(t_screen, 3),
         exact_seconds_per_pair=per_ours, statsmodels_seconds_per_pair=per_sm,
         speedup_exact_vs_statsmodels=round(per_sm / per_ours, 2),
         speedup_top_m_pattern=round(grouped["sm_s"] / grouped["ours_s"], 2),
         marginal_speedup_after_screen=round(ex["sm_s"] / ex["ours_marginal_s"], 2),
         max_abs_diff_log_or=max(ex["max_abs_diff_log_or"], grouped["max_abs_diff_log_or"]),
         max_abs_diff_se=max(ex["max_abs_diff_se"], grouped["max_abs_diff_se"]),
         max_rel_diff_p=max(ex["max_rel_diff_p"], grouped["max_rel_diff_p"]),
         peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
         load=os.getloadavg())


if __name__ == "__main__":
    main()
