"""Held-out detection scores of a label: does a judge, told only the label, pick the
activating reports out from the controls?

Balanced accuracy (mean of recall on activating reports and specificity on controls) is the
headline because the two held-out sets differ in size. Its 95% interval is Wilson's score
interval with the effective sample size n_eff = 4 / (1/n_top + 1/n_control): the binomial
variance BA(1-BA)/n_eff then equals the variance of the mean of two proportions when both
share one rate, it reduces to the plain Wilson interval on accuracy when the sets are equal
in size, and unlike a Wald interval it stays inside [0, 1] at BA = 1. AUROC (Mann-Whitney,
ties counted half) is reported only where the judge's scores are graded; recall per
activation decile shows whether the label holds below the very top of the cohort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) when n <= 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def balanced_accuracy_ci(tp: int, n_pos: int, tn: int, n_neg: int) -> tuple[float, float, float]:
    """(balanced accuracy, Wilson 95% low, high) with the effective sample size above."""
    if n_pos <= 0 or n_neg <= 0:
        return math.nan, math.nan, math.nan
    ba = (tp / n_pos + tn / n_neg) / 2.0
    n_eff = 4.0 / (1.0 / n_pos + 1.0 / n_neg)
    lo, hi = wilson(ba * n_eff, n_eff)
    return ba, lo, hi


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting one half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if pos.size == 0 or neg.size == 0:
        return math.nan
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def decile_recall(hit: np.ndarray, decile: np.ndarray, n_deciles: int) -> list[float]:
    """Recall within each activation decile (0 = strongest); NaN for a decile with no report."""
    out = []
    for d in range(n_deciles):
        m = decile == d
        out.append(float(hit[m].mean()) if m.any() else math.nan)
    return out


@dataclass(frozen=True)
class Detection:
    """Held-out scores of one label. Counts exclude reports the judge could not score."""

    n_top: int
    top_hits: int
    n_control: int
    control_hits: int
    balanced_accuracy: float
    ci_low: float
    ci_high: float
    precision: float
    recall: float
    auroc: float
    decile_recall: list[float]
    n_failed: int


def evaluate(
    top_scores: np.ndarray,
    control_scores: np.ndarray,
    top_deciles: np.ndarray,
    n_deciles: int,
    graded: bool,
    threshold: float = 0.5,
) -> Detection:
    """Scores in [0, 1] (NaN: the judge failed on that report); a report counts as a hit
    when its score is >= `threshold`."""
    ts, cs = np.asarray(top_scores, np.float64), np.asarray(control_scores, np.float64)
    ok_t, ok_c = ~np.isnan(ts), ~np.isnan(cs)
    t, c, dec = ts[ok_t], cs[ok_c], np.asarray(top_deciles)[ok_t]
    th, ch = t >= threshold, c >= threshold
    tp, fp = int(th.sum()), int(ch.sum())
    ba, lo, hi = balanced_accuracy_ci(tp, t.size, c.size - fp, c.size)
    return Detection(
        n_top=int(t.size),
        top_hits=tp,
        n_control=int(c.size),
        control_hits=fp,
        balanced_accuracy=ba,
        ci_low=lo,
        ci_high=hi,
        precision=tp / (tp + fp) if tp + fp else math.nan,
        recall=tp / t.size if t.size else math.nan,
        auroc=auroc(t, c) if graded else math.nan,
        decile_recall=decile_recall(th, dec, n_deciles),
        n_failed=int((~ok_t).sum() + (~ok_c).sum()),
    )
