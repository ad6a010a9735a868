"""Which features belong together: a parent feature and the features that are its parts.

A concept that the SAE split over several latents shows up in what the SAE gives in two
ways, and the rule uses both (thresholds in FamilyConfig):
- **nested** (Matryoshka parentage, absorption): a narrow latent that fires mostly when a
  broader one fires is its child ("stable cardiomegaly" inside "cardiomegaly"). Broader
  means an earlier Matryoshka prefix (early latents must reconstruct alone, so they carry
  the general concepts), then more studies. "Mostly" is judged with a Wilson lower bound
  on P(parent | child), so three chance co-firings do not make a child, and it must beat
  the parent's own firing rate `min_lift`-fold, so a feature that fires on most studies
  (report boilerplate) adopts nothing by chance.
- **direction** (feature splitting): latents that fire on different studies but write
  nearly the same direction ("mild cardiomegaly" / "enlarged heart"): decoder cosine at
  least 1/sqrt(2), i.e. most of the child's direction is the parent's.

Co-activation alone misses splits (split latents rarely fire together under TopK) and
decoder cosine alone misses Matryoshka children (their decoders hold only what the parent
lacks, near-orthogonal to it), hence both. Families are stars: features are visited
broadest first, and each joins the *parent* (a feature that joined no family) it relates
to most strongly, else becomes a parent itself. So every member is tied to its parent
directly, chains cannot drift from one concept to the next, and the result is a pure
function of the weights and activations (deterministic for a seed).

Cost: one sparse co-firing count (sum over studies of k^2) and one blocked decoder Gram
over live latents (N_live^2 d), far below an SAE training run (benchmarks/alignment.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import norm

from data_contracts.config import FamilyConfig

LINKS = ("parent", "nested", "direction")  # link codes 0, 1, 2 in FamilyTree.link
SILENT = -1


@dataclass(frozen=True)
class FamilyTree:
    """Per feature: its parent (itself for a parent or a lone feature, SILENT for a
    feature that never fires), how it joined (index into LINKS), P(parent | feature) and
    the decoder cosine to the parent; n_active: studies where it fires."""

    parent: np.ndarray
    link: np.ndarray
    containment: np.ndarray
    cosine: np.ndarray
    n_active: np.ndarray

    def members(self, min_members: int) -> dict[int, np.ndarray]:
        """parent -> its members (parent first, then by id), families of at least
        `min_members` only."""
        live = np.flatnonzero(self.parent != SILENT)
        par = self.parent[live]
        live = live[np.lexsort((live, live != par, par))]  # by family, parent first, then id
        starts = np.flatnonzero(np.r_[True, self.parent[live][1:] != self.parent[live][:-1]])
        groups = np.split(live, starts[1:])
        return {int(g[0]): g.astype(np.int64) for g in groups if len(g) >= min_members}


def prefix_level(n_features: int, prefixes: tuple[int, ...] | list[int] | None) -> np.ndarray:
    """Matryoshka level of each latent: 0 for the first prefix, 1 for the next, ...; all
    0 without prefixes."""
    bounds = np.asarray(list(prefixes) if prefixes else [n_features], dtype=np.int64)
    return np.searchsorted(bounds, np.arange(n_features), side="right").astype(np.int64)


def broad_first(n_active: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Feature ids ordered broadest first: level, then more studies, then id."""
    ids = np.arange(len(n_active))
    return np.lexsort((ids, -n_active, level))


def cofiring(study: np.ndarray, feature: np.ndarray, n_studies: int, n_features: int) -> sp.csr_matrix:
    """(N, N) counts of studies where both features fire (diagonal: where each fires)."""
    ones = np.ones(len(study), dtype=np.int64)
    F = sp.csr_matrix((ones, (study, feature)), shape=(n_studies, n_features))
    F.data[:] = 1  # a (study, feature) row twice must count once
    return (F.T @ F).tocsr()


def wilson_lower(k: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Wilson lower bound of the proportion k / n."""
    z = float(norm.ppf(confidence))
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(k, dtype=np.float64) / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.asarray((centre - half) / (1 + z * z / n))


def nested_links(C: sp.csr_matrix, n_active: np.ndarray, n_studies: int, pos: np.ndarray,
                 cfg: FamilyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(child, parent, P(parent | child)) of every nested pair, parent visited first."""
    coo = C.tocoo()
    parent, child, both = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float64)
    keep = pos[parent] < pos[child]
    parent, child, both = parent[keep], child[keep], both[keep]
    lower = wilson_lower(both, n_active[child], cfg.confidence)
    need = np.maximum(cfg.min_containment, cfg.min_lift * n_active[parent] / max(n_studies, 1))
    ok = lower >= need
    return child[ok], parent[ok], both[ok] / n_active[child[ok]]


def unit_rows(decoder: np.ndarray) -> np.ndarray:
    w = np.asarray(decoder, dtype=np.float32)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def direction_links(unit: np.ndarray, live: np.ndarray, pos: np.ndarray, min_cosine: float,
                    block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(child, parent, cosine) of every live pair with decoder cosine >= min_cosine,
    parent visited first. Blocked so memory stays block x N_live."""
    w = unit[live]
    kids, pars, cos = [], [], []
    for s in range(0, len(live), block):
        sim = w[s : s + block] @ w.T
        r, c = np.nonzero(sim >= min_cosine)
        r_id, c_id = live[s + r], live[c]
        keep = pos[c_id] < pos[r_id]  # each pair once: the row is the child
        kids.append(r_id[keep])
        pars.append(c_id[keep])
        cos.append(sim[r[keep], c[keep]].astype(np.float64))
    if not kids:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    return np.concatenate(kids), np.concatenate(pars), np.concatenate(cos)


def _candidates(nested: tuple[np.ndarray, ...], direction: tuple[np.ndarray, ...], pos: np.ndarray) -> pd.DataFrame:
    """Every (child, parent) link with its score (containment, or cosine squared: both
    the share of the child that is the parent's), best first per child."""
    frames = [pd.DataFrame({"child": nested[0], "parent": nested[1], "score": nested[2], "link": 1}),
              pd.DataFrame({"child": direction[0], "parent": direction[1], "score": direction[2] ** 2, "link": 2})]
    c = pd.concat(frames, ignore_index=True)
    c = c.assign(child_pos=pos[c["child"].to_numpy()], parent_pos=pos[c["parent"].to_numpy()])
    # on an equal score the nested link wins (link 1 before 2), then the broader parent
    return c.sort_values(["child_pos", "score", "link", "parent_pos"], ascending=[True, False, True, True],
                         kind="mergesort")


def _assign(n_features: int, cand: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Visit children broadest first; each takes its best-scoring candidate that is still
    a parent (has joined no family). Returns (parent, link code) per feature."""
    parent = np.arange(n_features, dtype=np.int64)
    link = np.zeros(n_features, dtype=np.int64)
    is_parent = np.ones(n_features, dtype=bool)
    child, par, lk = (cand[c].to_numpy() for c in ("child", "parent", "link"))
    done = -1
    for i in range(len(child)):
        j = int(child[i])
        if j == done or not is_parent[par[i]]:
            continue
        parent[j], link[j], is_parent[j], done = par[i], lk[i], False, j
    return parent, link


def build_families(decoder: np.ndarray, prefixes: tuple[int, ...] | list[int] | None, study: np.ndarray,
                   feature: np.ndarray, n_studies: int, cfg: FamilyConfig) -> FamilyTree:
    """Families of one SAE. `decoder`: (N, d) decoder directions; `study`, `feature`: the
    (study index, feature) of every firing (value > 0) over `n_studies` studies."""
    n = decoder.shape[0]
    study, feature = np.asarray(study, np.int64), np.asarray(feature, np.int64)
    C = cofiring(study, feature, n_studies, n)
    n_active = np.asarray(C.diagonal(), dtype=np.int64)
    order = broad_first(n_active, prefix_level(n, prefixes))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    live = np.sort(np.flatnonzero(n_active > 0))
    unit = unit_rows(decoder)
    nested = nested_links(C, n_active, n_studies, pos, cfg)
    direction = direction_links(unit, live, pos, cfg.min_cosine)
    parent, link = _assign(n, _candidates(nested, direction, pos))
    both = np.asarray(C[parent, np.arange(n)], dtype=np.float64).ravel()
    containment = np.divide(both, n_active, out=np.full(n, np.nan), where=n_active > 0)
    cosine = np.einsum("ij,ij->i", unit, unit[parent]).astype(np.float64)
    silent = n_active == 0
    parent[silent], link[silent] = SILENT, SILENT
    return FamilyTree(parent, link, containment, cosine, n_active)


def families_table(tree: FamilyTree, study: np.ndarray, feature: np.ndarray, min_members: int) -> pd.DataFrame:
    """FAMILIES rows: every family of at least `min_members` features, by family id."""
    fams = tree.members(min_members)
    fam_of = np.full(len(tree.parent), -1, dtype=np.int64)
    for p, m in fams.items():
        fam_of[m] = p
    f = fam_of[np.asarray(feature, np.int64)]
    hit = f >= 0
    n_fam = pd.Series(np.asarray(study)[hit]).groupby(f[hit]).nunique()
    rows = []
    for p, m in fams.items():
        rest = m[1:]
        rows.append({
            "family_id": p, "parent_feature": p, "n_members": len(m), "members": m.tolist(),
            "member_link": [LINKS[int(k)] for k in tree.link[m]],
            "member_containment": tree.containment[m].tolist(), "member_cosine": tree.cosine[m].tolist(),
            "n_active": int(n_fam.get(p, 0)),
            "parent_coverage": float(tree.n_active[p] / max(int(n_fam.get(p, 0)), 1)),
            "mean_containment": float(tree.containment[rest].mean()),
            "mean_cosine": float(tree.cosine[rest].mean()),
        })
    cols = ["family_id", "parent_feature", "n_members", "members", "member_link", "member_containment",
            "member_cosine", "n_active", "parent_coverage", "mean_containment", "mean_cosine"]
    return pd.DataFrame(rows, columns=cols)
