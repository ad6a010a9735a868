"""Concept alignment: does some SAE feature, or feature family, pick out a labelled concept?

On a labelled text set (default: the dev chest X-ray reports, labels = MeSH headings) this
embeds the reports (default encoder, cached by benchmarks/cxr_data.py), trains the
configured SAE (default: Matryoshka TopK, N 8192, K 20), computes feature families with the
pipeline's own code, and prints one JSON line per label:
- best single feature AUROC, best family AUROC and best *finding* AUROC (a finding is what
  the pipeline ranks: a family, or a feature in no family), activation as the score, with
  the family's / finding's size; "in-sample": the best unit chosen and scored on all reports (as the
  issue's figures); "heldout": chosen on one half of the reports, scored on the other, so
  the maximum over thousands of units is not its own evidence;
- the linear-probe AUROC (L2 logistic regression on the embeddings, 5-fold), the supervised
  ceiling; and `greedy_sum_auroc_heldout`: the sum of the k features a supervised greedy
  search picks on one half, scored on the other: what *any* group of k features could
  reach, an upper bound for a label-free family of that size.
Then a summary line (families, median size, families' cost vs SAE training), and with
`--demo DIR` (a finished `medconcepts demo --out DIR`) one line per planted finding and
modality: best feature vs best family Jaccard with the finding's studies, and their ranks.

Usage: python benchmarks/alignment.py [--data PATH] [--labels a,b|all] [--epochs E] [--n-features N] [--k K]
       [--demo DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import rankdata

from benchmarks.cxr_data import DEFAULT_CACHE, embed_reports, load_reports
from data_contracts.config import FamilyConfig, SAEConfig
from models.sae.data import ArraySource
from models.sae.encode import encode
from models.sae.train import train_sae
from tasks.families import compute_families

TARGETS = ("cardiomegaly", "pleural effusion", "pulmonary atelectasis", "emphysema", "nodule")


def auroc_columns(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of every column of S as a score for the boolean y (ties count half)."""
    r = rankdata(S, axis=0)
    n1 = int(y.sum())
    n0 = len(y) - n1
    return np.asarray((r[y].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0))


def probe_auroc(X: np.ndarray, y: np.ndarray, folds: int = 5, lam: float = 1.0, seed: int = 0) -> float:
    """Out-of-fold AUROC of an L2 logistic regression on standardised embeddings."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    score = np.zeros(len(y))
    for k in range(folds):
        tr, te = fold != k, fold == k
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8
        Z, yt = (X[tr] - mu) / sd, y[tr].astype(np.float64)

        def loss(w: np.ndarray, Z: np.ndarray = Z, yt: np.ndarray = yt) -> tuple[float, np.ndarray]:
            s = Z @ w[:-1] + w[-1]
            g = 1 / (1 + np.exp(-s)) - yt
            val = np.logaddexp(0, s).sum() - yt @ s + lam * w[:-1] @ w[:-1] / 2
            return float(val), np.r_[Z.T @ g + lam * w[:-1], g.sum()]

        w = minimize(loss, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B").x
        score[te] = ((X[te] - mu) / sd) @ w[:-1]
    return float(auroc_columns(score[:, None], y)[0])


def greedy_sum(A: np.ndarray, y: np.ndarray, pick: np.ndarray, k: int) -> float:
    """Supervised ceiling: add the feature that most raises the AUROC of the summed
    activations on `pick` rows, k times; the AUROC of the sum on the other rows."""
    live = np.flatnonzero((A[pick] > 0).sum(0) >= 3)
    s = np.zeros(len(y))
    for _ in range(k):
        gain = auroc_columns(s[pick, None] + A[np.ix_(pick, live)], y[pick])
        s += A[:, live[int(np.argmax(gain))]]
    return float(auroc_columns(s[~pick, None], y[~pick])[0])


def dense(vals: np.ndarray, idx: np.ndarray, n_features: int) -> np.ndarray:
    A = np.zeros((len(vals), n_features), np.float32)
    np.put_along_axis(A, idx, vals, axis=1)
    return A


def findings_matrix(A: np.ndarray, F: np.ndarray, sizes: np.ndarray,
                    table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What the pipeline ranks: every family, and every feature in no family (a family of
    one). Columns: F's families, then the lone features; with their sizes."""
    member = np.zeros(A.shape[1], bool)
    for m in table["members"] if len(table) else []:
        member[np.asarray(m, np.int64)] = True
    families = F[:, : len(table)]
    return np.hstack([families, A[:, ~member]]), np.r_[sizes[: len(table)], np.ones(int((~member).sum()), np.int64)]


def _best(S: np.ndarray, y: np.ndarray, half: np.ndarray) -> tuple[int, float, int, float]:
    """(column, in-sample AUROC) of the best column on all rows, and (column, held-out AUROC)
    of the best column on `half`, scored on the other rows."""
    s_all, s_half = auroc_columns(S, y), auroc_columns(S[half], y[half])
    b, h = int(np.argmax(s_all)), int(np.argmax(s_half))
    return b, float(s_all[b]), h, float(auroc_columns(S[~half, h:h + 1], y[~half])[0])


def label_row(label: str, y: np.ndarray, A: np.ndarray, F: np.ndarray, sizes: np.ndarray, X: np.ndarray,
              half: np.ndarray, k: int, G: np.ndarray, g_sizes: np.ndarray) -> dict[str, Any]:
    bf, f_all, _, f_held = _best(A, y, half)
    bq, q_all, hq, q_held = _best(F, y, half)
    bg, g_all, hg, g_held = _best(G, y, half)
    return {
        "label": label, "n_pos": int(y.sum()),
        "best_feature": bf, "best_feature_auroc": round(f_all, 4),
        "best_family_auroc": round(q_all, 4), "family_size": int(sizes[bq]),
        "best_finding_auroc": round(g_all, 4), "finding_size": int(g_sizes[bg]),
        "best_feature_auroc_heldout": round(f_held, 4),
        "best_family_auroc_heldout": round(q_held, 4),
        "family_size_heldout": int(sizes[hq]),
        "best_finding_auroc_heldout": round(g_held, 4), "finding_size_heldout": int(g_sizes[hg]),
        "probe_auroc": round(probe_auroc(X, y), 4),
        f"greedy_sum{k}_auroc_heldout": round(greedy_sum(A, y, half, k), 4),
    }


def family_matrix(acts: pd.DataFrame, table: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    ids = table["family_id"].to_numpy()
    F = np.zeros((n, max(len(ids), 1)), np.float32)
    col = np.searchsorted(ids, acts["family_id"].to_numpy())
    F[acts["study_id"].to_numpy(np.int64), col] = acts["value"].to_numpy()
    return F, table["n_members"].to_numpy() if len(ids) else np.ones(1, np.int64)


def run_alignment(args: argparse.Namespace) -> None:
    reports = load_reports(args.data)
    X = embed_reports(reports, args.cache)
    sizes_cfg = {k: v for k, v in (("epochs", args.epochs), ("n_features", args.n_features), ("k", args.k)) if v}
    cfg = SAEConfig(**sizes_cfg, seed=args.seed)
    t0 = time.perf_counter()
    model = train_sae(ArraySource(X), cfg).model
    train_s = time.perf_counter() - t0
    vals, idx = encode(model, X)
    rows = np.repeat(np.arange(len(X)), vals.shape[1])
    keep = vals.reshape(-1) > 0
    acts = pd.DataFrame({"study_id": rows[keep], "feature_id": idx.reshape(-1)[keep], "value": vals.reshape(-1)[keep]})
    decoder = model.W_dec.detach().cpu().numpy()
    t0 = time.perf_counter()
    table, fam_acts = compute_families(acts, np.arange(len(X)), decoder, list(model.prefixes), FamilyConfig())
    fam_s = time.perf_counter() - t0
    A = dense(vals, idx, cfg.n_features)
    F, sizes = family_matrix(fam_acts, table, len(X))
    G, g_sizes = findings_matrix(A, F, sizes, table)
    half = np.random.default_rng(args.seed).permutation(len(X)) < len(X) // 2
    labels = sorted({x for ls in reports.labels for x in ls}) if args.labels == "all" else args.labels.split(",")
    for label in labels:
        y = np.array([label in ls for ls in reports.labels])
        if y.sum() >= 10 and (~y).sum() >= 10:
            print(json.dumps(label_row(label, y, A, F, sizes, X, half, args.greedy, G, g_sizes)), flush=True)
    print(json.dumps({
        "summary": True, "reports": len(X), "sae": f"{cfg.variant} N={cfg.n_features} k={cfg.k} epochs={cfg.epochs}",
        "live_features": int((A > 0).any(0).sum()), "families": len(table),
        "median_family_size": float(np.median(sizes)) if len(table) else None,
        "max_family_size": int(sizes.max()) if len(table) else None,
        "features_in_families": int(sizes.sum()) if len(table) else 0,
        "train_seconds": round(train_s, 2), "families_seconds": round(fam_s, 3),
        "families_over_train": round(fam_s / train_s, 4), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }), flush=True)


def demo_lines(out: Path) -> None:
    """Best feature vs best family per planted finding, outcome and modality of a finished
    demo, from its self-check table (Jaccard with the planted studies; rank for the
    outcome; the confounded finding: its best rank over all outcomes)."""
    table = pd.DataFrame(json.loads((out / "demo_check.json").read_text()))
    for (finding, role, modality), g in table.groupby(["finding", "role", "modality"], sort=True):
        row: dict[str, Any] = {"demo": True, "finding": finding, "role": role, "modality": modality}
        if role == "planted_link":
            row["outcome"] = str(g["outcome"].iloc[0])
        for best, u in g.groupby("best"):  # feature | family (a family, or a feature in no family)
            ranks = pd.to_numeric(u["rank"], errors="coerce").dropna()
            row[f"best_{best}"] = None if u["feature_id"].isna().all() else int(u["feature_id"].iloc[0])
            row[f"{best}_jaccard"] = float(u["jaccard"].iloc[0])
            row[f"{best}_rank"] = int(ranks.min()) if len(ranks) else None
            if best == "family":
                size = pd.to_numeric(u["family_size"], errors="coerce").iloc[0]
                row["family_unit"], row["family_size"] = str(u["unit"].iloc[0]), None if pd.isna(size) else int(size)
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--labels", default=",".join(TARGETS), help="comma-separated, or 'all' (>= 10 positives)")
    ap.add_argument("--epochs", type=int, default=None, help="SAE epochs (default: the SAEConfig default)")
    ap.add_argument("--n-features", type=int, default=None, help="SAE latents (default: the SAEConfig default)")
    ap.add_argument("--k", type=int, default=None, help="SAE active latents (default: the SAEConfig default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--greedy", type=int, default=5, help="k of the supervised greedy ceiling")
    ap.add_argument("--demo", type=Path, default=None, help="a finished `medconcepts demo --out DIR`")
    ap.add_argument("--skip-reports", action="store_true", help="only the demo lines")
    args = ap.parse_args()
    if not args.skip_reports:
        run_alignment(args)
    if args.demo is not None:
        demo_lines(args.demo)


if __name__ == "__main__":
    main()
