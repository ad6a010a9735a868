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


def test_label_prefers_bigrams_and_merges_chains() -> None:
    scores = pd.DataFrame(
        {
            "term": [
                "calcification",
                "coronary artery",
                "artery calcification",
                "artery",
                "mild",
                "renal cyst",
            ],
            "count_top": [40, 38, 37, 39, 5, 30],
            "count_control": [1, 0, 0, 2, 5, 0],
            "z": [5.0, 4.9, 4.8, 4.7, 3.0, 2.0],
        }
    )
    picked = choose_label_terms(scores, n_terms=3)
    terms = [scores.at[p, "term"] for p in picked]
    assert terms == ["coronary artery", "artery calcification", "mild"]
    assert render_label(terms) == "coronary artery calcification; mild"
    # "renal cyst" is below half the best z: filler, never chosen
    assert "renal cyst" not in [scores.at[p, "term"] for p in choose_label_terms(scores, 10)]
    assert render_label(["no pleural effusion", "ascites"]) == "no pleural effusion; ascites"
    assert render_label(["pleural effusion", "right pleural", "small right"]) == (
        "small right pleural effusion"
    )
