"""Held-out scores against independent references: statsmodels' Wilson interval, a
pairwise count for AUROC, and per-decile recall by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from models.interpret.scoring import auroc, balanced_accuracy_ci, evaluate, wilson


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (41, 50), (500, 1000)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson(k, n) == pytest.approx((lo, hi), abs=1e-12)


def test_balanced_ci_is_wilson_on_accuracy_for_equal_sets_and_widens_for_unequal() -> None:
    ba, lo, hi = balanced_accuracy_ci(tp=40, n_pos=50, tn=45, n_neg=50)
    assert ba == pytest.approx(0.85)
    assert (lo, hi) == pytest.approx(proportion_confint(85, 100, method="wilson"), abs=1e-12)
    _, lo2, hi2 = balanced_accuracy_ci(tp=8, n_pos=10, tn=171, n_neg=190)  # same rates, 10 positives
    assert hi2 - lo2 > hi - lo
    assert balanced_accuracy_ci(50, 50, 50, 50)[2] == 1.0 and math.isnan(balanced_accuracy_ci(0, 0, 1, 2)[0])


def test_auroc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(pos, neg) == pytest.approx(np.mean(pairs), abs=1e-12)


def test_evaluate_counts_deciles_and_failures() -> None:
    top = np.array([1.0, 0.9, 0.2, np.nan, 0.7, 0.1])
    dec = np.array([0, 0, 1, 1, 2, 2])
    ctrl = np.array([0.0, 0.6, 0.1, np.nan])
    d = evaluate(top, ctrl, dec, n_deciles=4, graded=True)
    assert (d.n_top, d.top_hits, d.n_control, d.control_hits, d.n_failed) == (5, 3, 3, 1, 2)
    assert d.balanced_accuracy == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert d.precision == pytest.approx(3 / 4) and d.recall == pytest.approx(3 / 5)
    assert d.decile_recall[:3] == [1.0, 0.0, 0.5] and math.isnan(d.decile_recall[3])
    assert d.auroc == pytest.approx(auroc(np.array([1.0, 0.9, 0.2, 0.7, 0.1]), np.array([0.0, 0.6, 0.1])))
    assert math.isnan(evaluate(top, ctrl, dec, 4, graded=False).auroc)
