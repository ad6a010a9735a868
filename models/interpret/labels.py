"""Label terms of a feature from term counts: the log-odds ratio under an informative
Dirichlet prior ("Fightin' Words", Monroe, Colaresi & Quinn 2008), which shrinks rare terms
towards the corpus rate so a word seen in 2 of 50 reports does not win by chance, and the
rule that picks and renders the label's phrases. Pure: counts in, terms out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.interpret.terms import term_words

MIN_TERM_DOCS = 2  # a label term must appear in at least this many train top reports
# A label term must reach this fraction of the best term's z: weaker terms are filler that
# only adds control hits. A ratio stays meaningful however strong the prior makes z shrink.
LABEL_Z_FRACTION = 0.5
SCORE_COLUMNS = ("term", "count_top", "count_control", "log_odds", "z")


def log_odds_dirichlet(
    count_top: np.ndarray, count_control: np.ndarray, background: np.ndarray, prior_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds ratio of each term (top vs control) with an informative Dirichlet prior.

    Monroe et al. (2008) eq. 16-22: alpha_w = background frequency of w scaled so that
    alpha_0 = sum(alpha_w) = prior_scale * V (V = vocabulary size, so prior_scale is the
    mean pseudo-count per term);
    delta_w = log((y_t + a) / (n_t + a0 - y_t - a)) - log((y_c + a) / (n_c + a0 - y_c - a));
    var(delta_w) ~= 1 / (y_t + a) + 1 / (y_c + a); z = delta / sqrt(var).
    Returns (delta, z). Terms with zero background get the smallest positive prior so the
    formula stays finite.
    """
    yt = np.asarray(count_top, dtype=np.float64)
    yc = np.asarray(count_control, dtype=np.float64)
    bg = np.asarray(background, dtype=np.float64)
    if not (yt.shape == yc.shape == bg.shape) or yt.ndim != 1:
        raise ValueError("count_top, count_control and background must be 1-d and equal length")
    if yt.size == 0:
        return np.zeros(0), np.zeros(0)
    bg = np.where(bg > 0, bg, bg[bg > 0].min() if (bg > 0).any() else 1.0)
    a0 = prior_scale * yt.size
    a = a0 * bg / bg.sum()
    nt, nc = yt.sum(), yc.sum()
    delta = np.log((yt + a) / (nt + a0 - yt - a)) - np.log((yc + a) / (nc + a0 - yc - a))
    z = delta / np.sqrt(1.0 / (yt + a) + 1.0 / (yc + a))
    return delta, z


def score_terms(
    terms: Sequence[str],
    count_top: np.ndarray,
    count_control: np.ndarray,
    background: np.ndarray,
    prior_scale: float,
) -> pd.DataFrame:
    """Fightin' Words table (term, count_top, count_control, log_odds, z), z descending;
    ties (terms found in exactly the same reports) put bigrams first, then by term, so
    the order is deterministic and phrases win over their words."""
    delta, z = log_odds_dirichlet(count_top, count_control, background, prior_scale)
    df = pd.DataFrame(
        {
            "term": pd.Series(list(terms), dtype=object),
            "count_top": np.asarray(count_top, dtype=np.int64),
            "count_control": np.asarray(count_control, dtype=np.int64),
            "log_odds": delta,
            "z": z,
        }
    )
    order = order_terms(df["term"].to_numpy(dtype=object), z)
    return df.iloc[order].reset_index(drop=True)


def order_terms(terms: np.ndarray, z: np.ndarray, n_words: np.ndarray | None = None) -> np.ndarray:
    """Positions sorted by z descending, then more words first, then term."""
    if n_words is None:
        n_words = count_words(terms)
    return np.lexsort((terms.astype(str), -n_words, -np.asarray(z)))


def count_words(terms: np.ndarray) -> np.ndarray:
    """Words per term, negation prefix not counted."""
    return np.fromiter(
        (len(term_words(str(t))[1]) for t in terms), dtype=np.int64, count=len(terms)
    )


def _covers(bigram: str, unigram: str) -> bool:
    """True when `bigram` contains `unigram` with the same negation polarity."""
    bn, bw = term_words(bigram)
    un, uw = term_words(unigram)
    return bn == un and len(bw) == 2 and len(uw) == 1 and uw[0] in bw


def choose_label_terms(
    scores: pd.DataFrame, n_terms: int, min_docs: int = MIN_TERM_DOCS
) -> list[int]:
    """Row positions (in `scores`' order, best first) of the label terms: the best
    positive-z terms with support in >= `min_docs` top reports and at least
    LABEL_Z_FRACTION of the best z, where a bigram replaces the unigrams it contains, so
    labels read as phrases ("pleural effusion", not "effusion; pleural")."""
    return choose_terms(
        [str(t) for t in scores["term"]],
        scores["z"].to_numpy(dtype=np.float64),
        scores["count_top"].to_numpy(),
        n_terms,
        min_docs,
    )


def choose_terms(
    terms: Sequence[str], z: np.ndarray, count_top: np.ndarray, n_terms: int, min_docs: int
) -> list[int]:
    ok = (z > 0) & (count_top >= min_docs)
    if ok.any():
        ok &= z >= LABEL_Z_FRACTION * z[ok].max()
    chosen: list[int] = []
    for pos in np.flatnonzero(ok).tolist():
        if len(chosen) >= n_terms:
            break
        term = terms[pos]
        is_bigram = len(term_words(term)[1]) == 2
        if not is_bigram and any(_covers(terms[c], term) for c in chosen):
            continue
        if is_bigram:
            chosen = [c for c in chosen if not _covers(term, terms[c])]
        chosen.append(pos)
    return chosen


def render_label(terms: Sequence[str]) -> str:
    """Join label terms with "; ", merging chained bigrams of the same polarity
    ("coronary artery" + "artery calcification" -> "coronary artery calcification")."""
    phrases: list[tuple[bool, list[str]]] = []
    for t in terms:
        neg, words = term_words(t)
        for p in phrases:
            if p[0] == neg and len(words) == 2 and p[1][-1] == words[0]:
                p[1].append(words[1])
                break
            if p[0] == neg and len(words) == 2 and p[1][0] == words[1]:
                p[1].insert(0, words[0])
                break
        else:
            phrases.append((neg, list(words)))
    return "; ".join(("no " if neg else "") + " ".join(ws) for neg, ws in phrases)
