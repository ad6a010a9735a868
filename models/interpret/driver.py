"""Interpret units: split each unit's reports by patient, ask the explainer for k names,
keep the one that best detects the unit on the selection reports, score it on the test
reports, and score a label of another unit on the same test reports (the shuffled-label
baseline: what chance looks like for this cohort, this judge and these report sets).

Nothing here knows whether the names come from keywords or an LLM: the Explainer and Judge
interfaces (models.interpret.base) are all it uses. Failures of either (an empty, malformed
or refused reply, a timeout) become flags on the unit's row, never an exception.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig
from models.interpret.base import Candidate, Explainer, Judge
from models.interpret.scoring import Detection, evaluate
from models.interpret.units import UNIT_COLUMNS, Docs, UnitSample, sample_unit, unit_rng

MIN_TOP_REPORTS = 4
MIN_CONTROL_REPORTS = 2
TOO_FEW_LABEL = "(too few reports)"
FAILED_LABEL = "(no label)"


@dataclass
class _Unit:
    unit_id: int
    sample: UnitSample
    winner: Candidate | None
    row: dict[str, Any]


def interpret_units(
    cohorts: pd.DataFrame,
    docs: Docs,
    cfg: InterpretConfig,
    explainer: Explainer,
    judge: Judge,
    top_share: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """One row per unit in `cohorts` (columns unit_id, study_id, role, value), sorted by
    unit_id; see `_row` for the columns."""
    missing = set(UNIT_COLUMNS) - set(cohorts.columns)
    if missing:
        raise ValueError(f"unit cohorts lack columns {sorted(missing)}; expected {list(UNIT_COLUMNS)}")
    work = cohorts[list(UNIT_COLUMNS)].assign(study_id=cohorts["study_id"].astype(str))
    work = work.assign(doc=docs.row_index().get_indexer(pd.Index(work["study_id"])))
    units = []
    for uid, g in work.groupby("unit_id", sort=True):
        units.append(_interpret_one(g, docs, cfg, explainer, judge, int(cast(int, uid)), top_share))
        if progress is not None:
            progress(1)
    if cfg.baseline:
        _baselines(units, judge, cfg)
    return pd.DataFrame([u.row for u in units], columns=ROW_COLUMNS)


def _interpret_one(
    rows: pd.DataFrame, docs: Docs, cfg: InterpretConfig, explainer: Explainer, judge: Judge, uid: int,
    top_share: float,
) -> _Unit:
    s = sample_unit(rows, docs, cfg, uid, top_share)
    n_top = s.explain_top.size + s.select_top.size + s.test_top.size
    n_ctrl = s.explain_control.size + s.select_control.size + s.test_control.size
    if n_top < MIN_TOP_REPORTS or n_ctrl < MIN_CONTROL_REPORTS or s.test_top.size == 0 or s.test_control.size == 0:
        flag = (f"too_few_reports: {n_top} activating (need {MIN_TOP_REPORTS}), {n_ctrl} control "
                f"(need {MIN_CONTROL_REPORTS}) with text, on both sides of the patient split")
        return _Unit(uid, s, None, _row(uid, s, Candidate(TOO_FEW_LABEL), None, 0, flag))
    cands = explainer.explain(uid, s.explain_top, s.explain_control, cfg.n_candidates())
    valid = [c for c in cands if c.label]
    failed = _count_reasons(c.flag for c in cands if not c.label)
    if not valid:
        return _Unit(uid, s, None, _row(uid, s, Candidate(FAILED_LABEL), None, len(cands),
                                        f"no_label: {failed}" if failed else "no_label"))
    winner = _best(valid, s, judge, cfg) if len(valid) > 1 else valid[0]
    det, judge_flag = _detect(judge, winner, s.test_top, s.test_top_decile, s.test_control, cfg)
    flags = [f for f in (winner.flag, f"candidates_failed: {failed}" if failed else None, judge_flag) if f]
    return _Unit(uid, s, winner, _row(uid, s, winner, det, len(cands), "; ".join(flags) or None))


def _best(cands: list[Candidate], s: UnitSample, judge: Judge, cfg: InterpretConfig) -> Candidate:
    """The candidate with the best balanced accuracy on the selection reports (first on ties)."""
    if s.select_top.size == 0 or s.select_control.size == 0:
        return cands[0]
    bas = [_detect(judge, c, s.select_top, s.select_top_decile, s.select_control, cfg)[0].balanced_accuracy
           for c in cands]
    bas = [-1.0 if math.isnan(b) else b for b in bas]
    return cands[int(np.argmax(bas))]


def _detect(
    judge: Judge, cand: Candidate, top: np.ndarray, deciles: np.ndarray, control: np.ndarray, cfg: InterpretConfig
) -> tuple[Detection, str | None]:
    sc = judge.score(cand, np.concatenate([top, control]))
    det = evaluate(sc.values[: top.size], sc.values[top.size :], deciles, cfg.n_deciles, sc.graded, sc.threshold)
    flag = None
    if det.n_failed:
        flag = f"judge_failed: {det.n_failed} of {top.size + control.size} reports ({_fmt(sc.failures)})"
    return det, flag


def _count_reasons(flags: Any) -> str:
    return _fmt(Counter(str(f).split(":")[0] for f in flags if f))


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


ROW_COLUMNS = [
    "unit_id", "label", "explanation", "top_terms", "term_scores", "n_candidates", "n_train_top",
    "n_train_control", "n_heldout_top", "n_heldout_top_hits", "n_heldout_control", "n_heldout_control_hits",
    "heldout_balanced_accuracy", "ba_ci_low", "ba_ci_high", "precision", "recall", "auroc", "decile_recall",
    "baseline_label", "baseline_balanced_accuracy", "flag",
]


def _nan_none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _row(uid: int, s: UnitSample, c: Candidate, det: Detection | None, n_cand: int, flag: str | None
         ) -> dict[str, Any]:
    d = det
    return {
        "unit_id": uid, "label": c.label, "explanation": c.explanation, "top_terms": list(c.terms),
        "term_scores": list(c.term_scores), "n_candidates": n_cand, "n_train_top": int(s.explain_top.size),
        "n_train_control": int(s.explain_control.size),
        "n_heldout_top": d.n_top if d else int(s.test_top.size), "n_heldout_top_hits": d.top_hits if d else 0,
        "n_heldout_control": d.n_control if d else int(s.test_control.size),
        "n_heldout_control_hits": d.control_hits if d else 0,
        "heldout_balanced_accuracy": _nan_none(d.balanced_accuracy) if d else None,
        "ba_ci_low": _nan_none(d.ci_low) if d else None, "ba_ci_high": _nan_none(d.ci_high) if d else None,
        "precision": _nan_none(d.precision) if d else None, "recall": _nan_none(d.recall) if d else None,
        "auroc": _nan_none(d.auroc) if d else None, "decile_recall": list(d.decile_recall) if d else [],
        "baseline_label": None, "baseline_balanced_accuracy": None, "flag": flag,
    }


def _baselines(units: list[_Unit], judge: Judge, cfg: InterpretConfig) -> None:
    """Each labelled unit's test reports judged against another unit's label (see
    `donors`)."""
    named = [u for u in units if u.winner is not None]
    if len(named) < 2:
        return
    order = unit_rng(cfg.seed, 0, salt=1).permutation(len(named))
    for u, d in zip(named, donors([cast(Candidate, u.winner) for u in named], order), strict=True):
        if d is None:
            continue
        donor, s = cast(Candidate, named[d].winner), u.sample
        det, _ = _detect(judge, donor, s.test_top, s.test_top_decile, s.test_control, cfg)
        u.row["baseline_label"] = donor.label
        u.row["baseline_balanced_accuracy"] = _nan_none(det.balanced_accuracy)


def donors(names: list[Candidate], order: np.ndarray) -> list[int | None]:
    """Per name, the index of the name whose label is its baseline: the next in a cyclic
    shift over `order` (a derangement), skipping names that share a phrase with it. A name
    sharing a phrase is not chance: a feature family and its members, or sibling fragments
    of one concept, are often named with the same phrases in another order."""
    phrases = [_phrases(c) for c in names]
    out: list[int | None] = [None] * len(names)
    for pos, i in enumerate(order):
        for step in range(1, len(names)):
            j = int(order[(pos + step) % len(names)])
            if not phrases[i] & phrases[j]:
                out[int(i)] = j
                break
    return out


def _phrases(c: Candidate) -> set[str]:
    parts = c.terms or tuple(c.label.split(";"))
    return {" ".join(p.lower().split()) for p in parts if p.strip()}
