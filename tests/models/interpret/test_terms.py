"""Tests of negation-aware term extraction from radiology reports."""

from __future__ import annotations

from models.interpret.terms import extract_terms


def test_negation_scope_and_terms() -> None:
    t = extract_terms(
        "FINDINGS: No pleural effusion, pneumothorax or consolidation. "
        "Coronary artery calcification.\nIMPRESSION: No cirrhosis but splenomegaly is present."
    )
    assert {"no pleural effusion", "no pneumothorax", "no consolidation", "no cirrhosis"} <= t
    assert {"coronary artery", "artery calcification", "splenomegaly"} <= t
    assert "cirrhosis" not in t and "pleural effusion" not in t
    assert "findings" not in t and "impression" not in t


def test_no_bigram_across_boundaries() -> None:
    t = extract_terms("Liver cirrhosis. Spleen enlarged; kidney cyst: aorta, calcified")
    assert "cirrhosis spleen" not in t and "enlarged kidney" not in t
    assert "aorta calcified" not in t and "liver cirrhosis" in t


def test_post_trigger_and_pseudo_negation() -> None:
    t = extract_terms("Free fluid is absent. No change in the liver mass. Effusion ruled out.")
    assert "no free fluid" in t and "free fluid" not in t
    assert "liver mass" in t and "no liver mass" not in t
    assert "no effusion" in t and "effusion" not in t
