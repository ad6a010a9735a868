"""Offline, deterministic interpreter: names a unit (an SAE feature or a family) from the
reports of its top-activating studies versus control studies, and judges on other reports
whether they show that name.

Why this design: a researcher must be able to trust and reproduce a label without an LLM
or network. Phrases are compared with the log-odds ratio under an informative Dirichlet
prior ("Fightin' Words", Monroe, Colaresi & Quinn 2008), which shrinks rare phrases towards
the corpus rate so a phrase seen in 2 of 50 reports does not win by chance; the label rule
(models.interpret.labels) keeps phrases that read as the name of a finding, of one polarity.

Every report is tokenised once (models.interpret.terms) into a binary scipy.sparse
document-term matrix; each unit only sums rows of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data_contracts.config import InterpretConfig
from models.interpret.base import Candidate, Scores
from models.interpret.labels import (
    MIN_TERM_DOCS,
    choose_terms,
    count_words,
    inflections,
    log_odds_dirichlet,
    order_terms,
    render_label,
)
from models.interpret.terms import NEG_PREFIX, extract_terms, term_words
from models.interpret.vocab import NOT_CONTENT

NO_TERMS_LABEL = "(no distinctive terms)"


# ---------------------------------------------------------------- corpus
@dataclass(frozen=True)
class Corpus:
    """Every report tokenised once: a binary (documents x terms) CSR matrix."""

    terms: np.ndarray  # object array, column -> term
    matrix: sp.csr_matrix
    doc_freq: np.ndarray  # documents containing each term (the background counts)
    n_words: np.ndarray  # words per term, for tie-breaking towards phrases
    col_of: dict[str, int]
    modifier_share: np.ndarray  # one-word terms: share of their reports where a kept word follows


def build_corpus(texts: Sequence[str] | pd.Series, min_df: int = 2) -> Corpus:
    """Tokenise each report once; row i is texts[i]. Terms in fewer than `min_df` reports
    are dropped: they can never reach a label (a label term needs >= 2 top reports) and
    would only inflate the vocabulary, and with it the prior's total weight."""
    values = texts.to_numpy(dtype=object) if isinstance(texts, pd.Series) else list(texts)
    per_doc = [extract_terms(t) for t in values]
    flat = [t for terms in per_doc for t in terms]
    codes, uniques = pd.factorize(np.asarray(flat, dtype=object), sort=False)
    indptr = np.zeros(len(per_doc) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(t) for t in per_doc])
    n_vocab = len(uniques)
    mat = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.int32), codes.astype(np.int64), indptr),
        shape=(len(per_doc), n_vocab),
    )
    df = np.bincount(codes, minlength=n_vocab)
    keep = np.flatnonzero(df >= min_df)
    uniques_kept = np.asarray(uniques, dtype=object)[keep]
    mat = mat[:, keep].tocsr()
    mat.sort_indices()
    n_words = count_words(uniques_kept)
    return Corpus(uniques_kept, mat, df[keep], n_words, {str(t): i for i, t in enumerate(uniques_kept)},
                  _modifier_share(uniques_kept, df[keep], n_words))


def _modifier_share(terms: np.ndarray, df: np.ndarray, n_words: np.ndarray) -> np.ndarray:
    """For each one-word term, the reports of its two-word phrases that start with it over
    its own reports (capped at 1): near 1 for "nodular" (liver, contour), near 0 for
    "cirrhosis". Computed over the whole corpus, so it is a property of the language."""
    followed: dict[str, int] = {}
    for t, d, n in zip(terms, df, n_words, strict=True):
        if n == 2:
            neg, words = term_words(str(t))
            key = (NEG_PREFIX if neg else "") + words[0]
            followed[key] = followed.get(key, 0) + int(d)
    share = np.zeros(len(terms))
    for i, (t, d, n) in enumerate(zip(terms, df, n_words, strict=True)):
        if n == 1:
            share[i] = min(1.0, followed.get(str(t), 0) / max(int(d), 1))
    return share


def col_counts(corpus: Corpus, rows: np.ndarray) -> np.ndarray:
    """Per-term document counts over the given rows."""
    if rows.size == 0:
        return np.zeros(corpus.matrix.shape[1], dtype=np.int64)
    return np.asarray(corpus.matrix[rows].sum(axis=0), dtype=np.int64).ravel()


# ---------------------------------------------------------------- explainer
@dataclass(frozen=True)
class KeywordExplainer:
    """The label rule over Fightin' Words scores of top vs control reports; one candidate."""

    corpus: Corpus
    cfg: InterpretConfig
    name: str = "keywords"

    def explain(self, unit_id: int, top: np.ndarray, control: np.ndarray, k: int = 1) -> list[Candidate]:
        c = self.corpus
        yt, yc = col_counts(c, top), col_counts(c, control)
        _, z = log_odds_dirichlet(yt, yc, c.doc_freq, self.cfg.prior_scale)
        cand = np.flatnonzero((z > 0) & (yt >= MIN_TERM_DOCS))
        cand = cand[order_terms(c.terms[cand], z[cand], c.n_words[cand])]
        terms = [str(t) for t in c.terms[cand]]
        picked = choose_terms(terms, z[cand], yt[cand], self.cfg.n_terms, MIN_TERM_DOCS, c.modifier_share[cand])
        picked.sort(key=lambda p: -float(z[cand[p]]))
        if not picked:
            return [Candidate("", flag="no_terms: no phrase is enriched in the top reports and reads as a name")]
        chosen = [terms[p] for p in picked]
        return [Candidate(render_label(chosen), tuple(chosen), tuple(float(z[cand[p]]) for p in picked))]


# ---------------------------------------------------------------- judge
@dataclass(frozen=True)
class KeywordJudge:
    """A report shows a name when it contains one of the name's phrases (a negated phrase
    only as a negation), its head word in either number ("coronary artery calcification"
    matches "coronary artery calcifications"). A free-text name (an LLM's) is matched
    phrase by phrase: a phrase matches when all its content words occur un-negated, each in
    either number. The score is the share of phrases found, so names of several phrases give
    graded scores."""

    corpus: Corpus
    name: str = "keywords"

    def groups(self, candidate: Candidate) -> list[list[list[int]]]:
        """Per phrase, the parts a report must hold, each as the term columns of its forms
        (a report holds a part when it has any of them); a part no two reports share has
        no columns, and its phrase cannot match."""
        out = []
        phrases = candidate.terms or tuple(p for p in _split_label(candidate.label))
        for p in phrases:
            neg, words = term_words(p.lower())
            prefix = NEG_PREFIX if neg else ""
            if p in self.corpus.col_of:
                head = " ".join((*words[:-1], ""))
                out.append([self._columns(prefix + head + w for w in inflections(words[-1]))])
                continue
            content = [w for w in words if w not in NOT_CONTENT] or list(words)
            out.append([self._columns(prefix + f for f in inflections(w)) for w in content])
        return [g for g in out if g]

    def _columns(self, terms: Iterable[str]) -> list[int]:
        return [self.corpus.col_of[t] for t in terms if t in self.corpus.col_of]

    def score(self, candidate: Candidate, rows: np.ndarray) -> Scores:
        groups = self.groups(candidate)
        if rows.size == 0 or not groups:
            return Scores(np.zeros(rows.size), 1.0, False)
        sub = self.corpus.matrix[rows]
        found = np.zeros(rows.size)
        for parts in groups:
            if not all(parts):  # a part no two reports share: the phrase cannot match
                continue
            held = np.ones(rows.size, bool)
            for cols in parts:
                held &= np.asarray(sub[:, cols].sum(axis=1)).ravel() > 0
            found += held
        return Scores(found / len(groups), 1.0 / len(groups), len(groups) > 1)


def _split_label(label: str) -> list[str]:
    """Phrases of a free-text name: split on ';', ',', '/', ' and ', ' with '."""
    parts = re.split(r"[;,/]|\band\b|\bwith\b", label.lower())
    return [" ".join(re.findall(r"[a-z][a-z0-9'-]*", p)) for p in parts if re.search(r"[a-z]", p)]
