"""benchmarks/alignment.py: a finding is what the pipeline ranks (a family, or a feature in
no family), so the best finding may be a lone feature that beats every family."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.alignment import auroc_columns, findings_matrix, label_row


def test_findings_are_the_families_and_the_features_in_no_family() -> None:
    A = np.arange(20, dtype=np.float32).reshape(4, 5)
    F = np.full((4, 1), 7.0, np.float32)
    table = pd.DataFrame({"family_id": [0], "members": [[0, 2]], "n_members": [2]})
    G, sizes = findings_matrix(A, F, np.array([2]), table)
    np.testing.assert_array_equal(G, np.hstack([F, A[:, [1, 3, 4]]]))
    np.testing.assert_array_equal(sizes, [2, 1, 1, 1])
    G0, s0 = findings_matrix(A, np.zeros((4, 1), np.float32), np.ones(1, np.int64), table.iloc[:0])
    np.testing.assert_array_equal(G0, A)  # no families: every feature is its own finding
    np.testing.assert_array_equal(s0, np.ones(5))


def test_a_lone_feature_that_beats_every_family_is_the_best_finding() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    A = rng.random((400, 4)).astype(np.float32)
    A[:, 3] += 2.0 * y  # feature 3 (in no family) is the concept
    table = pd.DataFrame({"family_id": [0], "members": [[0, 1]], "n_members": [2]})
    F = (A[:, :1] + A[:, 1:2]).astype(np.float32)
    G, sizes = findings_matrix(A, F, np.array([2]), table)
    half = rng.permutation(400) < 200
    row = label_row("x", y, A, F, np.array([2]), rng.random((400, 3)), half, 1, G, sizes)
    assert row["best_feature"] == 3 and row["finding_size"] == 1
    assert row["best_finding_auroc"] == round(float(auroc_columns(A[:, 3:], y)[0]), 4) > row["best_family_auroc"]
