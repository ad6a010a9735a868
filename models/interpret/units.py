"""What an interpreter reads: unit cohorts and report documents, and the honest split of a
unit's reports into the ones that name it and the ones that score the name.

A *unit* is anything with an exposed cohort: an SAE feature, or a family of features (issue
14); its cohort rows are (unit_id, study_id, role, value) with role exposed | control.

The split is by patient, never by report: a patient's reports all land on one side, so the
scorer never sees the explainer's patients again (repeat studies of one patient read alike).
Patients with an exposed report and control-only patients are split separately so both
sides keep the cohort's mix. Held-out activating reports are drawn evenly across activation
deciles of the whole exposed cohort (decile 0 = strongest), so the score says how far down
the cohort the name still holds, not only whether it fits the very top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig

UNIT_COLUMNS = ("unit_id", "study_id", "role", "value")


@dataclass(frozen=True)
class Docs:
    """Report texts with their patient, one row per study that has text."""

    study_ids: np.ndarray  # object
    texts: np.ndarray  # object
    subjects: np.ndarray  # object (patient ids as strings)

    def row_index(self) -> pd.Index:
        return pd.Index(self.study_ids)


def make_docs(texts: pd.Series, subjects: pd.Series | None = None) -> Docs:
    """`texts`: study_id -> report text (missing or blank texts are dropped); `subjects`:
    study_id -> patient id (None: every study is its own patient)."""
    t = texts.set_axis(texts.index.astype(str))
    t = t[~t.index.duplicated(keep="first")]
    t = t[t.map(lambda v: isinstance(v, str) and bool(v.strip()))]
    if subjects is None:
        subj = t.index.to_numpy(dtype=object)
    else:
        s = subjects.set_axis(subjects.index.astype(str))
        s = s[~s.index.duplicated(keep="first")]
        known = s.reindex(t.index)
        subj = known.astype(object).where(known.notna(), t.index.to_series()).astype(str).to_numpy(dtype=object)
    return Docs(t.index.to_numpy(dtype=object), t.to_numpy(dtype=object), subj)


@dataclass(frozen=True)
class UnitSample:
    """Document rows of one unit, per use. Activating rows are strongest first."""

    explain_top: np.ndarray
    explain_control: np.ndarray
    select_top: np.ndarray  # empty unless best-of-k (k > 1)
    select_top_decile: np.ndarray
    select_control: np.ndarray
    test_top: np.ndarray
    test_top_decile: np.ndarray
    test_control: np.ndarray


def unit_rng(seed: int, unit_id: int, salt: int = 0) -> np.random.Generator:
    """One generator per (seed, unit): results do not depend on the order of units."""
    return np.random.default_rng([seed % 2**32, int(unit_id) % 2**32, salt])


def spread_pick(rows: np.ndarray, n: int, top_share: float, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n of `rows` (strongest first): the strongest round(n * top_share), then the
    rest drawn round-robin across `n_bins` activation quantiles of what remains."""
    if rows.size <= n:
        return rows
    n_top = round(n * top_share)
    head, rest = rows[:n_top], rows[n_top:]
    bins = (np.arange(rest.size) * n_bins) // max(rest.size, 1)
    return np.concatenate([head, rest[np.sort(_round_robin(bins, n - n_top, rng))]])


def _round_robin(bins: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions: shuffle within each bin, then take the 1st of every bin, the 2nd, ..."""
    order = rng.permutation(bins.size)
    within = np.empty(bins.size, np.int64)
    for b in np.unique(bins):
        members = order[bins[order] == b]
        within[members] = np.arange(members.size)
    return np.lexsort((bins, within))[:n]


def _split_patients(subjects: np.ndarray, frac: float, rng: np.random.Generator) -> set[str]:
    """The held-out share of these patients (>= 1 on each side when there are >= 2)."""
    pats = np.unique(subjects)
    if pats.size < 2:
        return set()
    n_held = min(max(1, round(frac * pats.size)), pats.size - 1)
    return set(pats[rng.permutation(pats.size)[:n_held]].tolist())


def sample_unit(rows: pd.DataFrame, docs: Docs, cfg: InterpretConfig, unit_id: int, top_share: float) -> UnitSample:
    """`rows`: one unit's cohort rows with a `doc` column (document row, -1: no text)."""
    rng = unit_rng(cfg.seed, unit_id)
    r = rows[rows["doc"].to_numpy() >= 0]
    exp = r[r["role"].to_numpy() == "exposed"].sort_values(["value", "study_id"], ascending=[False, True])
    ctrl = r[r["role"].to_numpy() == "control"].sort_values("study_id")
    exp_doc, ctrl_doc = exp["doc"].to_numpy(np.int64), ctrl["doc"].to_numpy(np.int64)
    decile = (np.arange(exp_doc.size) * cfg.n_deciles) // max(exp_doc.size, 1)
    exp_pat = set(docs.subjects[exp_doc].tolist())
    ctrl_only = np.array([s for s in docs.subjects[ctrl_doc] if s not in exp_pat], dtype=object)
    held = _split_patients(np.array(sorted(exp_pat), dtype=object), cfg.heldout_frac, rng)
    held |= _split_patients(ctrl_only, cfg.heldout_frac, rng)
    k = cfg.n_candidates()
    select = set(sorted(held)[::2]) if k > 1 else set()
    side_e = np.array([_side(s, held, select) for s in docs.subjects[exp_doc]], dtype=np.int8)
    side_c = np.array([_side(s, held, select) for s in docs.subjects[ctrl_doc]], dtype=np.int8)
    e_top = spread_pick(exp_doc[side_e == 0], cfg.n_top, top_share, cfg.n_deciles, rng)
    e_ctrl = _random(ctrl_doc[side_c == 0], cfg.n_control, rng)
    s_top, s_dec = _decile_pick(exp_doc[side_e == 1], decile[side_e == 1], cfg, rng)
    t_top, t_dec = _decile_pick(exp_doc[side_e == 2], decile[side_e == 2], cfg, rng)
    s_ctrl = _random(ctrl_doc[side_c == 1], cfg.n_score_control, rng)
    t_ctrl = _random(ctrl_doc[side_c == 2], cfg.n_score_control, rng)
    return UnitSample(e_top, e_ctrl, s_top, s_dec, s_ctrl, t_top, t_dec, t_ctrl)


def _side(subject: str, held: set[str], select: set[str]) -> int:
    """0 explain, 1 select (best-of-k), 2 test."""
    if subject not in held:
        return 0
    return 1 if subject in select else 2


def _random(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if rows.size <= n:
        return rows
    return rows[np.sort(rng.choice(rows.size, size=n, replace=False))]


def _decile_pick(
    rows: np.ndarray, deciles: np.ndarray, cfg: InterpretConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to n_score_top rows drawn evenly across activation deciles."""
    if rows.size <= cfg.n_score_top:
        return rows, deciles
    pick = np.sort(_round_robin(deciles, cfg.n_score_top, rng))
    return rows[pick], deciles[pick]
