"""The planted truth's own held-out score: the same draws the pipeline scores a unit's name
on (checked against the sample drawn directly), judged by the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig
from models.demo.ceiling import truth_ba
from models.demo.check import label_check
from models.demo.reports import FINDING_NAMES
from models.interpret.features import unit_key
from models.interpret.units import make_docs, sample_unit

N = 600


def _cohorts(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Studies s000..; two studies per patient; feature 3 and family 3 (another cohort)
    with 120 exposed studies (strongest first by value) and the rest as controls."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:03d}" for i in range(N)])
    texts = pd.Series([f"report {i}" for i in range(N)], index=ids)
    subjects = pd.Series([f"p{i // 2}" for i in range(N)], index=ids)
    frames = []
    for unit in ("feature", "family"):
        order = rng.permutation(N)
        role = np.where(np.arange(N) < 120, "exposed", "control")
        value = np.where(role == "exposed", 120.0 - np.arange(N), 0.0)
        frames.append(pd.DataFrame({"unit": unit, "feature_id": 3, "study_id": ids[order], "role": role,
                                    "value": value}))
    return pd.concat(frames, ignore_index=True), texts, subjects


def _reference(cohorts: pd.DataFrame, unit: str, docs_args: tuple[pd.Series, pd.Series], cfg: InterpretConfig,
               positives: set[str]) -> float:
    """Balanced accuracy of the truth on the held-out draws, from sample_unit directly."""
    docs = make_docs(*docs_args)
    rows = cohorts[cohorts["unit"] == unit].drop(columns=["unit", "feature_id"])
    rows = rows.assign(doc=docs.row_index().get_indexer(pd.Index(rows["study_id"])))
    s = sample_unit(rows, docs, cfg, unit_key(unit, 3), 0.5)
    hit = np.isin(docs.study_ids.astype(str), sorted(positives))
    return float((hit[s.test_top].mean() + (~hit[s.test_control]).mean()) / 2)


def test_truth_ba_scores_the_pipelines_own_held_out_draws() -> None:
    cohorts, texts, subjects = _cohorts()
    docs = make_docs(texts, subjects)
    cfg = InterpretConfig()
    for unit in ("feature", "family"):
        exp = cohorts[(cohorts["unit"] == unit) & (cohorts["role"] == "exposed")]
        ctl = cohorts[(cohorts["unit"] == unit) & (cohorts["role"] == "control")]
        # the finding: the strongest 60% of the cohort and a few controls
        positives = set(exp.sort_values("value", ascending=False)["study_id"][:72]) | set(ctl["study_id"][:15])
        got = truth_ba(cohorts, unit, 3, docs, cfg, positives)
        ref = _reference(cohorts, unit, (texts, subjects), cfg, positives)
        assert got is not None and abs(got - ref) < 1e-4
        assert 0.6 < got < 0.95  # weak deciles miss the finding: below a perfect cohort's 1.0
        assert truth_ba(cohorts, unit, 3, docs, cfg, set(exp["study_id"])) == 1.0
        assert truth_ba(cohorts, unit, 3, docs, cfg, set()) == 0.5  # names nothing: recall 0, specificity 1


def test_truth_ba_is_none_for_a_unit_without_a_cohort() -> None:
    cohorts, texts, subjects = _cohorts()
    assert truth_ba(cohorts, "feature", 99, make_docs(texts, subjects), InterpretConfig(), {"s000"}) is None


def test_label_check_reports_the_ceiling_beside_the_label_score() -> None:
    truth = {"findings": {k: {"study_ids": ["a", "b"]} for k in FINDING_NAMES}}
    exposed = pd.DataFrame({"feature_id": [1, 1], "study_id": ["a", "b"]})
    interp = pd.DataFrame({"feature_id": [1], "label": ["cirrhosis"], "heldout_balanced_accuracy": [0.8],
                           "baseline_balanced_accuracy": [0.5]})
    asked = []

    def ceiling(finding: str, modality: str, unit: str, fid: int) -> float | None:
        asked.append((finding, modality, unit, fid))
        return 0.81

    t = label_check(truth, {"report": exposed}, {"report": interp}, FINDING_NAMES, ceiling=ceiling)
    assert (t["truth_ba"] == 0.81).all() and ("cirrhosis", "report", "feature", 1) in asked
    assert label_check(truth, {"report": exposed}, {"report": interp}, FINDING_NAMES)["truth_ba"].isna().all()
