"""Tests of label terms: the Fightin' Words formula (checked against an independent numpy
computation) and label selection and rendering."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.interpret.labels import choose_label_terms, log_odds_dirichlet, render_label, score_terms


def test_log_odds_matches_direct_numpy() -> None:
    rng = np.random.default_rng(1)
    v = 50
    yt, yc = rng.integers(0, 30, v), rng.integers(0, 60, v)
    bg = rng.integers(1, 500, v)
    scale = 7.5
    # direct, term by term
    a0 = scale * v
    exp_delta, exp_z = np.empty(v), np.empty(v)
    for w in range(v):
        a = a0 * bg[w] / bg.sum()
        lt = np.log((yt[w] + a) / (yt.sum() + a0 - yt[w] - a))
        lc = np.log((yc[w] + a) / (yc.sum() + a0 - yc[w] - a))
        exp_delta[w] = lt - lc
        exp_z[w] = exp_delta[w] / np.sqrt(1 / (yt[w] + a) + 1 / (yc[w] + a))
    delta, z = log_odds_dirichlet(yt, yc, bg, scale)
    np.testing.assert_allclose(delta, exp_delta, rtol=1e-12)
    np.testing.assert_allclose(z, exp_z, rtol=1e-12)
    df = score_terms([f"t{i}" for i in range(v)], yt, yc, bg, scale)
    assert list(df.columns) == ["term", "count_top", "count_control", "log_odds", "z"]
    assert df["z"].is_monotonic_decreasing
    got = df.set_index("term").loc[[f"t{i}" for i in range(v)], "z"].to_numpy()
    np.testing.assert_allclose(got, exp_z, rtol=1e-12)


def _pick(rows: list[tuple[str, int, float]], n_terms: int = 3) -> list[str]:
    scores = pd.DataFrame(rows, columns=["term", "count_top", "z"])
    return [scores.at[p, "term"] for p in choose_label_terms(scores, n_terms)]


def test_longer_phrase_replaces_the_phrases_it_extends() -> None:
    rows = [
        ("calcification", 40, 5.0),
        ("coronary artery calcification", 36, 4.95),
        ("coronary artery", 38, 4.9),  # anatomy only: never a label phrase
        ("artery calcification", 37, 4.8),
        ("mild", 5, 3.0),  # a modifier alone is not a name
        ("renal cyst", 30, 2.0),  # below half the best z: filler
    ]
    assert _pick(rows) == ["coronary artery calcification"]
    # a longer phrase covering few of the shorter one's reports is a sub-case, not the name
    assert _pick([("pleural effusion", 40, 6.0), ("small left pleural effusion", 9, 5.0)]) == ["pleural effusion"]


def test_label_never_holds_a_term_and_its_negation() -> None:
    rows = [
        ("pulmonary vascular congestion", 30, 6.0),
        ("no vascular congestion", 25, 5.5),
        ("cardiomegaly", 28, 5.0),
        ("no pleural effusion", 40, 4.0),  # negated filler beside a positive finding
    ]
    assert _pick(rows) == ["pulmonary vascular congestion", "cardiomegaly"]
    # the negation leads but its finding is enriched un-negated too: the concept is pneumonia
    rows = [("no pneumonia", 30, 6.0), ("lobe pneumonia", 12, 4.0), ("no typical", 20, 5.9)]
    assert _pick(rows) == ["lobe pneumonia"]


def test_negated_terms_when_the_negation_is_the_concept() -> None:
    rows = [
        ("no acute cardiopulmonary abnormality", 50, 7.0),
        ("no pneumothorax", 45, 6.0),
        ("normal", 40, 5.5),  # a modifier alone
        ("heart size", 40, 5.0),  # anatomy and a frame noun: where, not what
        ("no focal alveolar", 30, 4.5),  # ends on an anatomical adjective: a fragment
    ]
    assert _pick(rows) == ["no acute cardiopulmonary abnormality", "no pneumothorax"]


def test_render_merges_chains_and_keeps_polarity() -> None:
    assert render_label(["coronary artery", "artery calcification"]) == "coronary artery calcification"
    assert render_label(["no pleural effusion", "ascites"]) == "no pleural effusion; ascites"
    assert render_label(["pleural effusion", "right pleural", "small right"]) == (
        "small right pleural effusion"
    )
    assert render_label(["left lower lobe", "lower lobe opacity"]) == "left lower lobe opacity"
