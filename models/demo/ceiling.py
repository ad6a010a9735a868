"""How high a label of a planted finding can score on a unit's held-out reports.

The label check scores a unit's name on held-out activating reports drawn across *all*
activation deciles of its cohort, plus controls (models.interpret.units). So the score
measures the cohort as much as the name: when the weakest deciles of a feature do not carry
the finding, no name of the finding is true of them. `truth_ba` scores the planted truth
itself on the same held-out sample (same seed, patient split and draws), as a judge that
knows which studies carry the finding would: what a label naming exactly the finding
scores under a perfect judge. A label below it is the interpreter's shortfall; a ceiling
below the target is the feature's. (A label can beat it: it may also name what the weak
deciles are.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig
from models.interpret.base import Candidate, Scores
from models.interpret.driver import interpret_units
from models.interpret.features import explain_top_share, unit_key
from models.interpret.units import Docs

NAME = "planted finding"


class TruthJudge:
    """A report shows the finding exactly when its study carries it in the planted truth."""

    name = "planted truth"

    def __init__(self, docs: Docs, positives: Iterable[str]) -> None:
        self._hit = np.isin(docs.study_ids.astype(str), np.asarray(sorted(set(positives)), dtype=str))

    def score(self, candidate: Candidate, rows: np.ndarray) -> Scores:
        return Scores(self._hit[np.asarray(rows, np.int64)].astype(np.float64), 0.5, graded=False)


class _Named:
    """Proposes the finding itself: the ceiling needs a name, not an explainer."""

    name = "planted truth"

    def explain(self, unit_id: int, top: np.ndarray, control: np.ndarray, k: int) -> list[Candidate]:
        return [Candidate(NAME)]


def truth_ba(cohorts: pd.DataFrame, unit: str, feature_id: int, docs: Docs, cfg: InterpretConfig,
             positives: Iterable[str]) -> float | None:
    """Held-out balanced accuracy of the planted truth on the sample the pipeline drew to
    score unit (`unit`, `feature_id`) of a COHORTS table; None when the unit has no cohort
    or too few reports to be scored."""
    unit_col = cohorts["unit"] if "unit" in cohorts.columns else pd.Series("feature", index=cohorts.index)
    rows = cohorts[(unit_col == unit).to_numpy() & (cohorts["feature_id"] == feature_id).to_numpy()]
    if rows.empty:
        return None
    rows = rows[["study_id", "role", "value"]].assign(unit_id=unit_key(unit, feature_id))
    quiet = cfg.model_copy(update={"baseline": False})
    out = interpret_units(rows, docs, quiet, _Named(), TruthJudge(docs, positives), explain_top_share(cfg))
    ba = float(out["heldout_balanced_accuracy"].iloc[0])  # one unit in, one row out
    return None if np.isnan(ba) else round(ba, 4)
