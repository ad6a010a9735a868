"""Label terms of a feature from term counts: the log-odds ratio under an informative
Dirichlet prior ("Fightin' Words", Monroe, Colaresi & Quinn 2008), which shrinks rare terms
towards the corpus rate so a word seen in 2 of 50 reports does not win by chance, and the
rule that picks and renders the label's phrases. Pure: counts in, terms out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.interpret.terms import term_words
from models.interpret.vocab import reads_as_name

MIN_TERM_DOCS = 2  # a label term must appear in at least this many train top reports
# A label term must reach this fraction of the best term's z: weaker terms are filler that
# only adds control hits. A ratio stays meaningful however strong the prior makes z shrink.
LABEL_Z_FRACTION = 0.5
# A word followed by another kept word in at least this share of its reports is a modifier
# ("nodular" liver, "multilevel" changes), not a name on its own.
MODIFIER_SHARE = 0.5
LONGER_SUPPORT = 0.75  # a longer phrase must cover this share of the top reports of the one it extends
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


def _contains(longer: str, shorter: str) -> bool:
    """True when `shorter`'s words occur in order inside `longer`'s (same negation
    polarity): "acute abnormality" is inside "acute cardiopulmonary abnormality"."""
    ln, lw = term_words(longer)
    sn, sw = term_words(shorter)
    if ln != sn or len(sw) >= len(lw):
        return False
    it = iter([_stem(w) for w in lw])
    return all(_stem(w) in it for w in sw)


def choose_label_terms(
    scores: pd.DataFrame, n_terms: int, min_docs: int = MIN_TERM_DOCS
) -> list[int]:
    """Row positions (in `scores`' order, best first) of the label terms (see choose_terms)."""
    return choose_terms(
        [str(t) for t in scores["term"]],
        scores["z"].to_numpy(dtype=np.float64),
        scores["count_top"].to_numpy(),
        n_terms,
        min_docs,
    )


def admissible(
    terms: Sequence[str], z: np.ndarray, count_top: np.ndarray, min_docs: int,
    modifier_share: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of terms that may stand in a label: enriched (z > 0) in >= `min_docs` top
    reports, reading as the name of a finding (models.interpret.vocab), and, for a negated
    term, only when the negation itself is the concept: no enriched positive term shares its
    head word ("no pneumonia" is dropped when "lobar pneumonia" is enriched too: the feature
    is about pneumonia, and the negation is what the reports argue about)."""
    parsed = [term_words(t) for t in terms]
    enriched = (np.asarray(z) > 0) & (np.asarray(count_top) >= min_docs)
    positive_heads = {w[-1] for (neg, w), e in zip(parsed, enriched, strict=True) if e and not neg and w}
    ok = np.array([e and reads_as_name(w) for (_, w), e in zip(parsed, enriched, strict=True)], dtype=bool)
    if modifier_share is not None:  # a lone word that mostly modifies the next one is no name
        ok &= np.array([len(w) > 1 for _, w in parsed], dtype=bool) | (np.asarray(modifier_share) < MODIFIER_SHARE)
    for i, (neg, w) in enumerate(parsed):
        if ok[i] and neg and w[-1] in positive_heads:
            ok[i] = False
    return ok


def choose_terms(
    terms: Sequence[str], z: np.ndarray, count_top: np.ndarray, n_terms: int, min_docs: int,
    modifier_share: np.ndarray | None = None,
) -> list[int]:
    """Positions of the label phrases, best first: admissible terms (see `admissible`)
    with at least LABEL_Z_FRACTION of the best one's z, all of the best one's polarity (a
    label never holds a term and its negation, and negated filler never rides along with a
    positive finding). A longer phrase replaces the shorter ones it contains when it covers
    at least LONGER_SUPPORT of their reports ("coronary artery calcification" for "coronary
    artery"), and is skipped otherwise (a sub-case: "small left pleural effusion")."""
    z = np.asarray(z, dtype=np.float64)
    ok = admissible(terms, z, count_top, min_docs, modifier_share)
    if not ok.any():
        return []
    first = int(np.flatnonzero(ok)[np.argmax(z[ok])])
    polarity = term_words(terms[first])[0]
    ok &= z >= LABEL_Z_FRACTION * z[first]
    chosen: list[int] = []
    for pos in np.flatnonzero(ok).tolist():
        term = terms[pos]
        if term_words(term)[0] != polarity or any(_same_or_inside(terms[c], term) for c in chosen):
            continue
        inside = [c for c in chosen if _contains(term, terms[c])]
        # a phrase joining two chosen ones ("calcified" + "granuloma") needs the support of
        # the rarer; one extending a single phrase needs that phrase's
        need = (min if len(inside) > 1 else max)(count_top[c] for c in inside) if inside else 0
        if inside and count_top[pos] < LONGER_SUPPORT * need:
            continue
        if inside:  # the longer phrase takes the place of the first one it replaces
            at = chosen.index(inside[0])
            chosen = [c for c in chosen[:at] if c not in inside] + [pos] + [c for c in chosen[at:] if c not in inside]
        else:
            chosen.append(pos)
    return chosen[:n_terms]


def _stem(word: str) -> str:
    """Singular of a regular English plural ("opacities" -> "opacity", "granulomas" ->
    "granuloma"), enough to see that two phrases say the same thing."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def inflections(word: str) -> tuple[str, ...]:
    """The word first, then its singular and regular plurals ("calcifications" ->
    "calcification"; "artery" -> "arteries"). Some forms are not words ("ascite"): callers
    keep only forms their corpus holds, so a report may state a name in either number."""
    base = _stem(word)
    forms = [word, base, base + "s", base + "es"]
    if len(base) > 2 and base.endswith("y") and base[-2] not in "aeiou":
        forms.append(base[:-1] + "ies")
    return tuple(dict.fromkeys(forms))


def _same_or_inside(chosen: str, term: str) -> bool:
    """`term` repeats a chosen phrase: contained in it, or equal to it up to plurals."""
    if _contains(chosen, term):
        return True
    (cn, cw), (tn, tw) = term_words(chosen), term_words(term)
    return cn == tn and [_stem(w) for w in cw] == [_stem(w) for w in tw]


def render_label(terms: Sequence[str]) -> str:
    """Join label phrases with "; ", merging a phrase that extends another by one word at
    either end ("coronary artery" + "artery calcification" -> "coronary artery
    calcification"). Negated phrases render once as "no <phrase>"."""
    phrases: list[tuple[bool, list[str]]] = []
    for t in terms:
        neg, words = term_words(t)
        m = len(words) - 1
        for p in phrases:
            if p[0] != neg or m < 1 or len(p[1]) < m:
                continue
            if list(words[:m]) == p[1][-m:]:
                p[1].append(words[-1])
                break
            if list(words[1:]) == p[1][:m]:
                p[1].insert(0, words[0])
                break
        else:
            phrases.append((neg, list(words)))
    return "; ".join(("no " if neg else "") + " ".join(ws) for neg, ws in phrases)
