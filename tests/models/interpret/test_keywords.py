"""Tests of the keyword interpreter: the corpus, the held-out split, recovery of planted
findings and the INTERPRETATIONS contract."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from data_contracts.config import InterpretConfig
from data_contracts.schemas import INTERPRETATIONS
from models.interpret.driver import TOO_FEW_LABEL
from models.interpret.features import interpret_features
from models.interpret.keywords import build_corpus
from tests.models.interpret.synthetic import synthetic as _synthetic


def test_document_frequency_counts_once() -> None:
    corpus = build_corpus(["Effusion. Effusion. Effusion.", "Effusion."])
    j = list(corpus.terms).index("effusion")
    assert corpus.doc_freq[j] == 2 and corpus.matrix.max() == 1


# ---------------------------------------------------------------- end to end
def test_interpret_recovers_planted_findings_and_contract() -> None:
    reports, cohorts = _synthetic(1200, 6)
    cfg = InterpretConfig(n_top=100, n_control=300, n_terms=3, seed=0)
    out = interpret_features(cohorts, reports, cfg, modality="report")
    assert list(out.columns) == INTERPRETATIONS.schema.names
    pa.Table.from_pandas(out, schema=INTERPRETATIONS.schema, preserve_index=False)
    labels = dict(zip(out["feature_id"], out["label"], strict=True))
    assert "pleural effusion" in labels[2] and "no pleural effusion" not in labels[2]
    assert "coronary artery calcification" in labels[1]
    assert "cirrhotic liver" in labels[0] or "varices" in labels[0]
    assert (out["heldout_balanced_accuracy"] > 0.8).all()
    row = out.iloc[0]
    assert row["n_heldout_top"] + row["n_train_top"] == 100
    assert row["n_heldout_control"] == 100 and row["n_train_control"] == 150  # 300 split by patient, capped
    assert row["baseline_balanced_accuracy"] < 0.65 and row["baseline_label"] != row["label"]
    assert row["ba_ci_low"] <= row["heldout_balanced_accuracy"] <= row["ba_ci_high"]
    assert 0 <= row["n_heldout_top_hits"] <= row["n_heldout_top"]
    assert len(row["top_terms"]) == len(row["term_scores"]) <= 3


def test_heldout_split_is_seeded_and_independent_of_row_order() -> None:
    reports, cohorts = _synthetic(600, 3, seed=3)
    cfg = InterpretConfig(n_top=40, n_control=80, seed=5)
    out = interpret_features(cohorts, reports, cfg, "report")
    again = interpret_features(cohorts.sample(frac=1.0, random_state=2), reports, cfg, "report")
    pd.testing.assert_frame_equal(out, again)
    other = interpret_features(cohorts, reports, cfg.model_copy(update={"seed": 6}), "report")
    assert not out["n_heldout_top_hits"].equals(other["n_heldout_top_hits"]) or not out[
        "n_heldout_control_hits"
    ].equals(other["n_heldout_control_hits"])


def test_too_few_reports_and_missing_texts_are_flagged() -> None:
    reports, cohorts = _synthetic(300, 2, seed=4)
    small = cohorts[(cohorts.feature_id == 0) & (cohorts["rank"] <= 3) | (cohorts.feature_id == 1)]
    reports = reports.copy()
    reports.iloc[:5] = None
    reports.iloc[5:10] = "   "
    out = interpret_features(small, reports, InterpretConfig(), "image")
    r0 = out[out.feature_id == 0].iloc[0]
    assert r0["label"] == TOO_FEW_LABEL and r0["flag"].startswith("too_few_reports")
    assert r0["top_terms"] == [] and pd.isna(r0["heldout_balanced_accuracy"])
    assert out[out.feature_id == 1].iloc[0]["flag"] is None
    assert (out["modality"] == "image").all()
    pa.Table.from_pandas(out, schema=INTERPRETATIONS.schema, preserve_index=False)


def test_empty_cohorts_give_empty_contract_frame() -> None:
    cohorts = pd.DataFrame({"feature_id": [], "study_id": [], "role": [], "value": [], "rank": []})
    out = interpret_features(cohorts, pd.Series(dtype=object), InterpretConfig(), "report")
    assert out.empty and list(out.columns) == INTERPRETATIONS.schema.names


def test_family_rows_are_named_as_their_own_unit() -> None:
    """Family cohort rows (issue 14: unit = family, feature_id = the family id, which is its
    parent feature's id) go through interpret_unit_cohorts as unit "family": feature rows
    are unchanged by their presence, and a family's row is that of its own cohort."""
    reports, cohorts = _synthetic(600, 3, seed=3)
    cfg = InterpretConfig(n_top=40, n_control=80, seed=5)
    feats = cohorts.assign(unit="feature")
    fam = cohorts[cohorts.feature_id == 2].assign(unit="family")
    out = interpret_features(pd.concat([feats, fam], ignore_index=True), reports, cfg, "report")
    assert sorted(zip(out["unit"], out["feature_id"], strict=True)) == [
        ("family", 2), ("feature", 0), ("feature", 1), ("feature", 2)]
    pa.Table.from_pandas(out, schema=INTERPRETATIONS.schema, preserve_index=False)
    alone = interpret_features(cohorts, reports, cfg, "report")
    cols = ["feature_id", "label", "n_heldout_top_hits", "n_heldout_control_hits", "heldout_balanced_accuracy"]
    pd.testing.assert_frame_equal(out.loc[out["unit"] == "feature", cols].reset_index(drop=True), alone[cols])
    row = out[out["unit"] == "family"].iloc[0]
    assert "pleural effusion" in row["label"] and row["heldout_balanced_accuracy"] > 0.8
    # a single family still gets a shuffled-label baseline: another unit's label
    assert row["baseline_label"] is not None and "pleural effusion" not in row["baseline_label"]
    assert row["baseline_balanced_accuracy"] < 0.65
