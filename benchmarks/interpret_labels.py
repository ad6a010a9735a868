"""Keyword labels on real radiology language: the dev chest X-ray reports
(benchmarks/cxr_data.py, MiniLM embeddings cached), the default SAE and cohort rule, the
default keyword interpreter. For each MeSH heading (the five of issue 13 first, then the
most frequent others) the testable feature whose activation best separates reports with
the heading (AUROC over all reports) is labelled; each row says whether the label names the
finding (the heading or a synonym) and whether it holds a term together with its negation.

Prints one JSON line per feature and a final {"summary": ...} line.
Usage: python benchmarks/interpret_labels.py [--features 20] [--cache PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cxr_data import DEFAULT_CACHE, embed_reports, load_reports
from data_contracts.config import CohortConfig, InterpretConfig, SAEConfig
from models.cohorts import feature_stats_and_cohorts
from models.interpret.features import interpret_features
from models.interpret.scoring import auroc
from models.interpret.terms import term_words
from models.sae.encode import encode
from models.sae.train import train_sae

TARGETS = {  # heading -> words a label naming it contains (the heading or a synonym)
    "cardiomegaly": ("cardiomegaly", "enlarged heart", "cardiac enlargement", "enlarged cardiac", "heart enlarged"),
    "pleural effusion": ("pleural effusion", "effusion", "pleural fluid"),
    "emphysema": ("emphysema", "hyperinflat", "hyperexpan", "copd", "obstructive pulmonary"),
    "pulmonary atelectasis": ("atelectasis", "atelectatic"),
    "nodule": ("nodule", "nodular"),
}


def activations(x: np.ndarray, ids: list[str], cfg: SAEConfig) -> pd.DataFrame:
    vals, cols = encode(train_sae(x, cfg).model, x)
    keep = vals > 0
    rows = np.repeat(np.arange(len(ids)), vals.shape[1])[keep.ravel()]
    return pd.DataFrame({"study_id": np.asarray(ids)[rows], "feature_id": cols[keep], "value": vals[keep]})


def contradictory(terms: list[str]) -> bool:
    """A term and a negated term about the same head word in one label."""
    parsed = [term_words(t) for t in terms]
    pos = {w[-1] for neg, w in parsed if not neg and w}
    return any(neg and w and w[-1] in pos for neg, w in parsed)


def best_features(act: pd.DataFrame, stats: pd.DataFrame, ids: list[str], labels: list[list[str]],
                  n: int) -> list[tuple[str, int, float, int]]:
    pos = {s: i for i, s in enumerate(ids)}
    testable = stats.loc[stats["testable"], "feature_id"].to_numpy()
    a = np.zeros((len(ids), len(testable)), np.float32)
    col = {f: j for j, f in enumerate(testable)}
    sub = act[act["feature_id"].isin(col)]
    a[sub["study_id"].map(pos).to_numpy(), sub["feature_id"].map(col).to_numpy()] = sub["value"].to_numpy()
    counts = pd.Series([h for hs in labels for h in hs]).value_counts()
    headings = list(TARGETS) + [h for h in counts.index if h not in TARGETS and counts[h] >= 10]
    out: list[tuple[str, int, float, int]] = []
    for h in headings:
        y = np.array([h in hs for hs in labels])
        scores = np.array([auroc(a[y, j], a[~y, j]) for j in range(len(testable))])
        for j in np.argsort(-scores):
            if int(testable[j]) not in {o[1] for o in out}:
                out.append((h, int(testable[j]), float(scores[j]), int(y.sum())))
                break
        if len(out) >= n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    a = ap.parse_args()
    t0 = time.perf_counter()
    reports = load_reports()
    x = embed_reports(reports, a.cache)
    act = activations(x, reports.ids, SAEConfig())
    stats, cohorts = feature_stats_and_cohorts(act, np.asarray(reports.ids), SAEConfig().n_features, CohortConfig())
    chosen = best_features(act, stats, reports.ids, reports.labels, a.features)
    feats = [c[1] for c in chosen]
    texts = pd.Series(reports.texts, index=reports.ids)
    out = interpret_features(cohorts[cohorts["feature_id"].isin(feats)], texts, InterpretConfig(), "report")
    by_id = {int(r["feature_id"]): r for r in out.to_dict("records")}
    named_all, contra = [], 0
    for heading, fid, au, n in chosen:
        r = by_id[fid]
        words = TARGETS.get(heading, (heading,))
        named = any(w in r["label"].lower() for w in words)
        bad = contradictory(list(r["top_terms"]))
        contra += bad
        if heading in TARGETS:
            named_all.append(named)
        row: dict[str, Any] = {"heading": heading, "n_reports": n, "feature_id": fid, "auroc": round(au, 3),
                               "label": r["label"], "names_finding": named, "contradictory": bad}
        for k in ("heldout_balanced_accuracy", "ba_ci_low", "ba_ci_high", "baseline_balanced_accuracy"):
            row[k] = None if pd.isna(r[k]) else round(float(r[k]), 3)
        print(json.dumps(row), flush=True)
    print(json.dumps({"summary": {"targets_named": f"{sum(named_all)}/{len(named_all)}",
                                  "labels_with_contradiction": contra, "features": len(chosen),
                                  "seconds": round(time.perf_counter() - t0, 1), "loadavg": os.getloadavg()}}))


if __name__ == "__main__":
    main()
