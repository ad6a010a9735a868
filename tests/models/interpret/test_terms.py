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


def test_deidentification_tokens_and_phrases() -> None:
    t = extract_terms("Calcified XXXX granuloma. Small left pleural effusion. XXXX XXXX by Dr. XXXX.")
    assert not any("xxxx" in x for x in t)
    assert "calcified granuloma" not in t  # the removed word broke the phrase
    assert {"small left pleural", "left pleural effusion", "pleural effusion"} <= t
    assert "small left pleural effusion" not in t  # phrases stop at three words


def test_trigrams_keep_negation_polarity() -> None:
    t = extract_terms("No focal airspace disease. Heart size is normal.")
    assert {"no focal airspace disease", "no focal airspace", "no airspace disease"} <= t
    assert "focal airspace disease" not in t and "heart size" in t
