"""A family's activation per study against a dense reference: the length of its members'
share of the reconstruction, their sum or their max."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.families.activation import family_activations


@pytest.mark.parametrize("how", ["norm", "sum", "max"])
def test_family_activation_matches_dense_reference(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.families.activation.CHUNK_ROWS", 7)  # several chunks
    rng = np.random.default_rng(3)
    n, n_feat, d = 60, 12, 8
    W = rng.normal(size=(n_feat, d)) * rng.uniform(0.5, 2.0, size=(n_feat, 1))  # rows not unit: normalised
    A = np.where(rng.uniform(size=(n, n_feat)) < 0.3, rng.uniform(0.1, 2.0, size=(n, n_feat)), 0.0)
    study, feat = np.nonzero(A)
    acts = pd.DataFrame({"study_id": [f"s{i:03d}" for i in study], "feature_id": feat.astype(np.int32),
                         "value": A[study, feat].astype(np.float32)}).sample(frac=1.0, random_state=0)
    members = {2: np.array([2, 5, 7]), 4: np.array([4, 0])}
    out = family_activations(acts, members, W, how).set_index(["study_id", "family_id"])["value"]
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    a32 = A.astype(np.float32).astype(np.float64)
    for fid, m in members.items():
        if how == "norm":
            ref = np.linalg.norm(a32[:, m] @ U[m], axis=1)
        else:
            ref = a32[:, m].sum(1) if how == "sum" else a32[:, m].max(1)
        fired = (A[:, m] > 0).any(axis=1)
        got = np.array([out.get((f"s{i:03d}", fid), 0.0) for i in range(n)])
        np.testing.assert_allclose(got[fired], ref[fired], rtol=1e-5)
        assert (got[~fired] == 0).all() and (out.xs(fid, level="family_id") > 0).all()


def test_single_member_value_is_the_feature_activation() -> None:
    W = np.eye(3) * 4.0
    acts = pd.DataFrame({"study_id": ["a", "a", "b"], "feature_id": [0, 1, 1], "value": [2.0, 0.0, 1.5]})
    out = family_activations(acts, {1: np.array([1, 0])}, W)
    assert out.to_dict("records") == [{"study_id": "a", "family_id": 1, "value": 2.0},
                                      {"study_id": "b", "family_id": 1, "value": 1.5}]
