"""Who is analysed: each labelled study's discovery/validation split (by patient) and, per
modality, whether that modality encoded it.

Association and survival both read this one table (the STUDY_SPLIT artifact) instead of
each rebuilding it, so a (modality, feature, outcome) pair is analysed on the same studies
in both stages: a study a modality could not encode (quarantined) is neither exposed nor a
control in that modality's analyses, and every stage sees the same split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_contracts.errors import ContractError
from models.outcomes.split import DISCOVERY, VALIDATION, check_disjoint, study_splits

COLUMNS = ["modality", "study_id", "subject_id", "split", "encoded"]


def study_population(labels: pd.DataFrame, encoded: Mapping[str, np.ndarray], frac: float,
                     seed: int) -> pd.DataFrame:
    """STUDY_SPLIT rows: one per (modality, labelled study), sorted by modality and study.

    labels: OUTCOME_LABELS rows; encoded: modality -> the study ids it embedded."""
    studies = labels[["study_id", "subject_id"]].drop_duplicates("study_id").sort_values("study_id")
    ids = studies["study_id"].to_numpy()
    split = study_splits(labels, ids, frac, seed)
    # pandas hashes; np.isin on string (object) ids compares every pair (quadratic)
    frames = [studies.assign(modality=m, split=split, encoded=pd.Index(ids).isin(np.asarray(enc, dtype=object)))
              for m, enc in sorted(encoded.items())]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


@dataclass(frozen=True)
class Population:
    """A STUDY_SPLIT table aligned with a study order (OutcomeMatrices.study_ids)."""

    split: np.ndarray  # 'discovery' | 'validation' per study
    encoded: dict[str, np.ndarray]  # modality -> bool per study


def population_arrays(table: pd.DataFrame, study_ids: np.ndarray, subject_ids: np.ndarray,
                      modalities: Sequence[str], source: str) -> Population:
    """Align `table` with `study_ids`; refuse a table that misses a modality or a study,
    gives a study another patient or two splits, or a patient two splits. `source` names
    the table's file in errors."""
    _check_split_values(table, source)
    fix = "a study_split artifact built from these outcome labels and this run's modalities"
    split: np.ndarray | None = None
    encoded = {}
    for m in modalities:
        rows = table[table["modality"] == m].drop_duplicates("study_id").set_index("study_id")
        if not len(rows):
            raise ContractError(source, None, "modality", f"no rows for modality '{m}'", fix)
        rows = rows.reindex(study_ids)
        missing = rows["split"].isna().to_numpy()
        if missing.any():
            raise ContractError(source, None, "study_id", f"labelled studies without a row for modality '{m}': "
                                f"{list(study_ids[missing][:5])}", fix)
        if not np.array_equal(rows["subject_id"].to_numpy(np.int64), np.asarray(subject_ids, np.int64)):
            raise ContractError(source, None, "subject_id", "studies recorded with another patient "
                                "than in the outcome labels", fix)
        this = rows["split"].to_numpy(object)
        if split is not None and not np.array_equal(split, this):
            raise ContractError(source, None, "split", f"modality '{m}' puts studies in another split "
                                "than the other modalities", "one split per study, shared by every modality")
        split = this
        encoded[m] = rows["encoded"].to_numpy(bool)
    split = np.empty(len(study_ids), object) if split is None else split
    per_study = pd.DataFrame({"subject_id": subject_ids, "split": split})
    check_disjoint(per_study, per_study.groupby("subject_id")["split"].first())
    return Population(split, encoded)


def _check_split_values(table: pd.DataFrame, source: str) -> None:
    bad = np.flatnonzero(~table["split"].isin([DISCOVERY, VALIDATION]).to_numpy())
    if len(bad):
        raise ContractError(source, int(bad[0]), "split", f"value {table['split'].iloc[bad[0]]!r}",
                            f"'{DISCOVERY}' or '{VALIDATION}'")
