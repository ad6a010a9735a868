"""Offline, deterministic feature interpreter: names a sparse-autoencoder feature from the
reports of its top-activating studies versus control studies, and scores that name on
held-out reports.

Why this design: a researcher must be able to trust and reproduce a label without an LLM
or network. Terms are compared with the log-odds ratio under an informative Dirichlet
prior ("Fightin' Words", Monroe, Colaresi & Quinn 2008), which shrinks rare terms towards
the corpus rate so a word seen in 2 of 50 reports does not win by chance. The label is
then checked on reports it was not derived from ("applies to 41/50 unseen top reports vs
3/150 controls"), which is what makes it a claim rather than a caption.

Every report is tokenised once (models.interpret.terms) into a binary scipy.sparse
document-term matrix; each feature only sums rows of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data_contracts.config import InterpretConfig
from data_contracts.schemas import INTERPRETATIONS
from models.interpret.labels import (
    LABEL_Z_FRACTION,
    MIN_TERM_DOCS,
    choose_terms,
    count_words,
    log_odds_dirichlet,
    order_terms,
    render_label,
)
from models.interpret.terms import extract_terms

MIN_TOP_REPORTS = 4
MIN_CONTROL_REPORTS = 2
TOO_FEW_LABEL = "(too few reports)"
NO_TERMS_LABEL = "(no distinctive terms)"


# ---------------------------------------------------------------- corpus
@dataclass(frozen=True)
class Corpus:
    """Every report tokenised once: a binary (documents x terms) CSR matrix."""

    row_of: dict[str, int]  # study_id -> matrix row
    terms: np.ndarray  # object array, column -> term
    matrix: sp.csr_matrix
    doc_freq: np.ndarray  # documents containing each term (the background counts)
    n_words: np.ndarray  # words per term (1 or 2), for tie-breaking towards phrases


def build_corpus(reports: pd.Series, min_df: int = 2) -> Corpus:
    """Tokenise each non-empty report once. Terms in fewer than `min_df` reports are
    dropped: they can never reach the label (a label term needs >= 2 top reports) and
    would only inflate the vocabulary, and with it the prior's total weight."""
    texts = reports[~reports.index.duplicated(keep="first")]
    texts = texts[texts.map(lambda t: isinstance(t, str) and bool(t.strip()))]
    per_doc = [extract_terms(t) for t in texts.to_numpy()]
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
    return Corpus(
        row_of={str(s): i for i, s in enumerate(texts.index)},
        terms=uniques_kept,
        matrix=mat,
        doc_freq=df[keep],
        n_words=count_words(uniques_kept),
    )


def _col_counts(corpus: Corpus, rows: np.ndarray) -> np.ndarray:
    """Per-term document counts over the given rows."""
    if rows.size == 0:
        return np.zeros(corpus.matrix.shape[1], dtype=np.int64)
    return np.asarray(corpus.matrix[rows].sum(axis=0), dtype=np.int64).ravel()


def _hits(corpus: Corpus, rows: np.ndarray, cols: list[int]) -> int:
    """Number of reports (rows) containing at least one of the term columns."""
    if rows.size == 0 or not cols:
        return 0
    sub = corpus.matrix[rows][:, cols]
    return int((np.asarray(sub.sum(axis=1)).ravel() > 0).sum())


# ---------------------------------------------------------------- per feature
@dataclass(frozen=True)
class _Split:
    train_top: np.ndarray
    held_top: np.ndarray
    train_control: np.ndarray
    held_control: np.ndarray


def _rng(seed: int, feature_id: int) -> np.random.Generator:
    """One generator per (seed, feature): results do not depend on feature order."""
    return np.random.default_rng([seed % 2**32, int(feature_id) % 2**32])


def _select_rows(rows: pd.DataFrame, role: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Corpus rows of a role: the n best-ranked exposed reports, or a seeded sample of n
    control reports (controls do not activate, so their rank carries no meaning).
    `rows` is pre-sorted by (rank, study_id) and carries each study's corpus row."""
    ids = pd.unique(rows.loc[rows["role"].to_numpy() == role, "row"].to_numpy())
    ids = ids[ids >= 0].astype(np.int64)
    if role == "exposed" or ids.size <= n:
        return ids[:n]
    return ids[np.sort(rng.choice(ids.size, size=n, replace=False))]


def _split(
    rows: np.ndarray, heldout_frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out split; both sides get at least one report when n >= 2."""
    perm = rows[rng.permutation(rows.size)]
    n_held = min(max(1, round(heldout_frac * rows.size)), rows.size - 1) if rows.size >= 2 else 0
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _make_split(rows: pd.DataFrame, cfg: InterpretConfig, fid: int) -> _Split:
    rng = _rng(cfg.seed, fid)
    top = _select_rows(rows, "exposed", cfg.n_top, rng)
    ctrl = _select_rows(rows, "control", cfg.n_control, rng)
    tt, ht = _split(top, cfg.heldout_frac, rng)
    tc, hc = _split(ctrl, cfg.heldout_frac, rng)
    return _Split(tt, ht, tc, hc)


def _label_feature(corpus: Corpus, s: _Split, cfg: InterpretConfig) -> dict[str, object]:
    """Label from the train split, scored on the held-out split."""
    yt, yc = _col_counts(corpus, s.train_top), _col_counts(corpus, s.train_control)
    _, z = log_odds_dirichlet(yt, yc, corpus.doc_freq, cfg.prior_scale)
    cand = np.flatnonzero((z > 0) & (yt >= MIN_TERM_DOCS))
    if cand.size:  # the same cut choose_terms makes; done first so little is sorted
        cand = cand[z[cand] >= LABEL_Z_FRACTION * z[cand].max()]
    cand = cand[order_terms(corpus.terms[cand], z[cand], corpus.n_words[cand])]
    zc = z[cand]
    terms_c = [str(t) for t in corpus.terms[cand]]
    picked = choose_terms(terms_c, zc, yt[cand], cfg.n_terms, MIN_TERM_DOCS)
    picked.sort(key=lambda p: -float(zc[p]))
    terms = [terms_c[p] for p in picked]
    cols = [int(cand[p]) for p in picked]
    ht, hc = _hits(corpus, s.held_top, cols), _hits(corpus, s.held_control, cols)
    ba = (ht / s.held_top.size + 1.0 - hc / s.held_control.size) / 2.0
    return {
        "label": render_label(terms) if terms else NO_TERMS_LABEL,
        "top_terms": terms,
        "term_scores": [float(zc[p]) for p in picked],
        "n_heldout_top_hits": ht,
        "n_heldout_control_hits": hc,
        "heldout_balanced_accuracy": float(ba),
        "flag": None if terms else "no_terms",
    }


def _interpret_one(
    rows: pd.DataFrame, corpus: Corpus, cfg: InterpretConfig, fid: int
) -> dict[str, object]:
    s = _make_split(rows, cfg, fid)
    n_top = s.train_top.size + s.held_top.size
    n_ctrl = s.train_control.size + s.held_control.size
    base: dict[str, object] = {
        "feature_id": fid,
        "n_train_top": s.train_top.size,
        "n_train_control": s.train_control.size,
        "n_heldout_top": s.held_top.size,
        "n_heldout_control": s.held_control.size,
    }
    if n_top < MIN_TOP_REPORTS or n_ctrl < MIN_CONTROL_REPORTS:
        return base | {
            "label": TOO_FEW_LABEL,
            "top_terms": [],
            "term_scores": [],
            "n_heldout_top_hits": 0,
            "n_heldout_control_hits": 0,
            "heldout_balanced_accuracy": None,
            "flag": f"too_few_reports: {n_top} top (need {MIN_TOP_REPORTS}), "
            f"{n_ctrl} control (need {MIN_CONTROL_REPORTS})",
        }
    return base | _label_feature(corpus, s, cfg)


# ---------------------------------------------------------------- entry point
def interpret_features(
    cohorts: pd.DataFrame, reports: pd.Series, cfg: InterpretConfig, modality: str
) -> pd.DataFrame:
    """Label every unit (feature, or feature family) in `cohorts` (COHORTS contract) from
    the report texts in `reports` (study_id -> text; missing or empty texts are skipped).
    The background corpus is every report given. Returns rows in the INTERPRETATIONS
    contract, one per unit, sorted by unit and feature_id."""
    missing = {"feature_id", "study_id", "role", "rank"} - set(cohorts.columns)
    if missing:
        raise ValueError(f"cohorts is missing columns {sorted(missing)} (COHORTS contract)")
    corpus = build_corpus(reports.set_axis(reports.index.astype(str)))
    ids = pd.Index(list(corpus.row_of))
    work = cohorts[["feature_id", "study_id", "role", "rank"]].assign(
        study_id=cohorts["study_id"].astype(str),
        unit=cohorts["unit"].to_numpy() if "unit" in cohorts.columns else "feature",
    )
    work = work.assign(row=ids.get_indexer(pd.Index(work["study_id"])))
    work = work.sort_values(["unit", "feature_id", "rank", "study_id"], kind="mergesort")
    rows = [
        {**_interpret_one(group, corpus, cfg, int(cast(int, fid))), "unit": unit}
        for (unit, fid), group in work.groupby(["unit", "feature_id"], sort=True)
    ]
    return _to_contract(pd.DataFrame(rows), modality)


def _to_contract(df: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Columns in contract order with contract dtypes."""
    names = INTERPRETATIONS.schema.names
    if df.empty:
        df = pd.DataFrame({n: [] for n in names})
    df["modality"] = modality
    out = df[names].copy()
    out["feature_id"] = out["feature_id"].astype(np.int32)
    for c in (
        "n_train_top",
        "n_train_control",
        "n_heldout_top",
        "n_heldout_top_hits",
        "n_heldout_control",
        "n_heldout_control_hits",
    ):
        out[c] = out[c].astype(np.int64)
    out["heldout_balanced_accuracy"] = out["heldout_balanced_accuracy"].astype(np.float64)
    for c in ("modality", "unit", "label", "flag", "top_terms", "term_scores"):
        out[c] = out[c].astype(object)
    out["flag"] = out["flag"].where(out["flag"].notna(), None)
    return out.reset_index(drop=True)
