"""Feature families on a constructed SAE whose split features are known: Matryoshka
children, direction splits, a ubiquitous feature that must adopt nothing, chance
co-firings, a chain that must not drift, dead latents; determinism and the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from data_contracts.config import FamilyConfig
from models.families.rule import LINKS, SILENT, build_families, families_table, wilson_lower

N, D, N_STUDIES = 24, 32, 400
PREFIXES = (8, 24)  # features 0-7 are the early (broad) prefix


def _rotate(u: np.ndarray, v: np.ndarray, deg: float) -> np.ndarray:
    """u turned by `deg` degrees towards v (a unit vector orthogonal to u)."""
    a = np.deg2rad(deg)
    return np.cos(a) * u + np.sin(a) * v


def constructed_sae(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(decoder, study index, feature, value) of every firing, with the planted truth:
    - 0 parent; 9 and 10 fire only when 0 fires (nested, decoders orthogonal to 0); 15
      fires only when 9 fires (a grandchild: it joins 0, the parent, directly);
    - 1 and 12 split one direction (cosine 0.9) over disjoint studies; 16 is 40 degrees
      from 12 but 80 from 1: the chain 1 - 12 - 16 must not pull 16 into 1's family;
    - 2 fires on 80% of studies, 13 on a random 15%: P(2 | 13) is about 0.8, by chance;
    - 14 fires twice, both times with 3: too few to call it a child;
    - 23 never fires."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    W = q.T[:N].copy()  # orthonormal rows: no direction links unless planted
    spare = q.T[N]  # a direction no feature uses
    a = np.rad2deg(np.arccos(0.9))
    W[12] = _rotate(W[1], spare, a)
    W[16] = _rotate(W[1], spare, a + 40.0)
    fires = np.zeros((N_STUDIES, N), dtype=bool)
    s = np.arange(N_STUDIES)
    fires[:, 0] = s < 120
    fires[:, 9] = (s < 120) & (s % 3 == 0)
    fires[:, 10] = (s < 120) & (s % 4 == 1)
    fires[:, 15] = fires[:, 9] & (s % 2 == 0)
    fires[:, 1] = (s >= 120) & (s < 170)
    fires[:, 12] = (s >= 170) & (s < 210)
    fires[:, 16] = (s >= 210) & (s < 240)
    fires[:, 2] = rng.uniform(size=N_STUDIES) < 0.8
    fires[:, 13] = rng.uniform(size=N_STUDIES) < 0.15
    fires[:, 3] = (s >= 240) & (s < 300)
    fires[[250, 260], 14] = True
    for f in (4, 5, 6, 7, 8, 11, 17, 18, 19, 20, 21, 22):
        fires[:, f] = rng.uniform(size=N_STUDIES) < 0.05
    study, feature = np.nonzero(fires)
    value = rng.uniform(0.5, 3.0, size=len(study))
    return W, study, feature, value


def test_known_splits_are_recovered() -> None:
    W, study, feature, _ = constructed_sae()
    tree = build_families(W, PREFIXES, study, feature, N_STUDIES, FamilyConfig())
    link = {f: LINKS[int(k)] if k >= 0 else "silent" for f, k in enumerate(tree.link)}
    assert [int(tree.parent[f]) for f in (9, 10, 15)] == [0, 0, 0]
    assert [link[f] for f in (0, 9, 10, 15)] == ["parent", "nested", "nested", "nested"]
    assert tree.parent[12] == 1 and link[12] == "direction" and tree.cosine[12] == pytest.approx(0.9)
    assert tree.parent[16] == 16  # 12 is a member, not a parent: no chains
    assert tree.parent[13] == 13  # the ubiquitous 2 adopts nothing by chance
    assert tree.parent[14] == 14  # two co-firings are not "mostly"
    assert tree.parent[23] == SILENT and tree.link[23] == SILENT
    fams = tree.members(2)
    assert {p: m.tolist() for p, m in fams.items()} == {0: [0, 9, 10, 15], 1: [1, 12]}


def test_only_the_lift_rule_keeps_the_ubiquitous_feature_childless() -> None:
    """13 fires "mostly" with 2 (P(2 | 13) about 0.8, with confidence), which a
    containment-only rule would call nesting; it is only what 2 does everywhere."""
    W, study, feature, _ = constructed_sae()
    tree = build_families(W, PREFIXES, study, feature, N_STUDIES, FamilyConfig())
    k = int(np.isin(study[feature == 13], study[feature == 2]).sum())
    n13, p2 = int((feature == 13).sum()), (feature == 2).sum() / N_STUDIES
    assert wilson_lower(np.array([k]), np.array([n13]), 0.95)[0] > 0.5
    assert k / n13 < 2 * p2 and tree.parent[13] == 13


def test_deterministic_and_independent_of_row_order() -> None:
    W, study, feature, _ = constructed_sae()
    a = build_families(W, PREFIXES, study, feature, N_STUDIES, FamilyConfig())
    perm = np.random.default_rng(1).permutation(len(study))
    b = build_families(W, PREFIXES, study[perm], feature[perm], N_STUDIES, FamilyConfig())
    for x, y in zip((a.parent, a.link, a.containment, a.cosine), (b.parent, b.link, b.containment, b.cosine),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_table_matches_an_independent_count() -> None:
    W, study, feature, _ = constructed_sae()
    cfg = FamilyConfig()
    tree = build_families(W, PREFIXES, study, feature, N_STUDIES, cfg)
    table = families_table(tree, study, feature, cfg.min_members).set_index("family_id")
    fires = pd.crosstab(study, feature).reindex(columns=range(N), fill_value=0).to_numpy() > 0
    r = table.loc[0]
    assert list(r.members) == [0, 9, 10, 15] and r.n_members == 4 and r.parent_feature == 0
    assert list(r.member_link) == ["parent", "nested", "nested", "nested"]
    expect = [fires[fires[:, m], 0].mean() for m in (0, 9, 10, 15)]
    np.testing.assert_allclose(r.member_containment, expect)
    assert r.n_active == fires[:, [0, 9, 10, 15]].any(axis=1).sum()
    assert r.parent_coverage == pytest.approx(fires[:, 0].sum() / r.n_active)
    assert r.mean_containment == pytest.approx(np.mean(expect[1:]))
    one = table.loc[1]
    assert list(one.member_link) == ["parent", "direction"] and one.mean_cosine == pytest.approx(0.9)
    assert one.mean_containment == 0.0  # split features never fire together


def test_wilson_lower_bound_matches_statsmodels() -> None:
    k, n = np.array([3, 8, 20, 1]), np.array([3, 10, 40, 7])
    ref = proportion_confint(k, n, alpha=0.10, method="wilson")[0]  # one-sided 95% = two-sided 90%
    np.testing.assert_allclose(wilson_lower(k, n, 0.95), ref, rtol=1e-12)


def test_families_off_or_nothing_fires() -> None:
    W, study, feature, _ = constructed_sae()
    tree = build_families(W, None, study[:0], feature[:0], N_STUDIES, FamilyConfig())
    assert (tree.parent == SILENT).all() and tree.members(2) == {}
    assert families_table(tree, study[:0], feature[:0], 2).empty
