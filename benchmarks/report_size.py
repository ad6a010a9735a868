"""Benchmark: size of the HTML report, per page and in total, for the demo and for a
synthetic run of 8,192 features x 300 outcomes, against the issue's caps (per feature page
<= 150 KB, demo <= 3 MB, 8192 x 300 <= 60 MB). There is no peer renderer to compare with:
the ratios are to the caps.

The demo part reads a finished demo (its published `report/` folder); without --demo-dir it
runs `medconcepts demo` into a temporary folder first (minutes). The synthetic part builds
the associations of every pair in both splits, interpretations, feature statistics, sparse
activations, image cohorts over a few CT volumes, top reports and survival curves of each
outcome's top 3 hits, then renders through the same functions as the report task
(`models.figures.build.report_tables`, `reports.html.render_report`). Prints one JSON object.

    .venv/bin/python benchmarks/report_size.py [--demo-dir DIR | --skip-demo] [--features 8192 --outcomes 300
        --families 400]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import norm

from data_contracts.config import ReportConfig
from models.figures.build import Families, report_tables
from models.stats.screen import bh_qvalues
from models.stats.survival import km_curve
from reports.html import render_report

KB, MB = 1000, 1000_000
CAPS = {"feature_page_bytes": 150 * KB, "demo_total_bytes": 3 * MB, "synthetic_total_bytes": 60 * MB}
WORDS = ("liver", "cirrhotic", "nodular", "contour", "varices", "spleen", "enlarged", "ascites", "kidney",
         "cyst", "lesion", "hypodense", "coronary", "calcification", "aorta", "atherosclerosis", "lung",
         "nodule", "emphysema", "effusion", "bowel", "normal", "stable")


def sizes(report: Path) -> dict:
    pages = {str(p.relative_to(report)): p.stat().st_size for p in sorted(report.rglob("*")) if p.is_file()}
    feat = [v for k, v in pages.items() if k.startswith("features/")]
    return {"bytes_per_page": pages, "n_feature_pages": len(feat), "index_bytes": pages.get("index.html", 0),
            "max_feature_page_bytes": max(feat, default=0),
            "median_feature_page_bytes": int(np.median(feat)) if feat else 0, "total_bytes": sum(pages.values())}


def demo_part(demo_dir: Path | None) -> dict:
    if demo_dir is None:
        demo_dir = Path(tempfile.mkdtemp(prefix="report_size_demo_"))
        exe = Path(sys.executable).with_name("medconcepts")
        subprocess.run([str(exe), "demo", "--out", str(demo_dir), "--no-check"], check=True,
                       stdout=subprocess.DEVNULL)
    s = sizes(demo_dir / "report")
    return {"source": str(demo_dir), **s, "total_vs_cap": round(s["total_bytes"] / CAPS["demo_total_bytes"], 4),
            "max_page_vs_cap": round(s["max_feature_page_bytes"] / CAPS["feature_page_bytes"], 4)}


# ---------------------------------------------------------------- synthetic run
def associations(rng: np.random.Generator, n_f: int, n_o: int) -> pd.DataFrame:
    """Both splits of every pair; ~1% of pairs carry an effect and rank in discovery."""
    n = n_f * n_o
    feature = np.tile(np.arange(n_f), n_o)
    outcome = np.repeat([f"outcome_{o:03d}" for o in range(n_o)], n_f)
    frames = []
    effect = rng.uniform(size=n) < 0.01
    for split in ("discovery", "validation"):
        n1 = rng.integers(60, 400, n)
        base = rng.uniform(0.002, 0.08, n_o).repeat(n_f)
        log_or = np.where(effect, rng.normal(1.2, 0.4, n), rng.normal(0, 0.15, n))
        p1 = np.clip(base * np.exp(log_or), 0, 0.95)
        a = rng.binomial(n1, p1)
        n0 = 20_000 - n1
        c = rng.binomial(n0, base)
        se = np.sqrt(1 / (a + .5) + 1 / (n1 - a + .5) + 1 / (c + .5) + 1 / (n0 - c + .5))
        p = 2 * norm.sf(np.abs(log_or / se))
        frames.append(pd.DataFrame({
            "modality": "image", "feature_id": feature.astype(np.int32), "outcome_id": outcome, "split": split,
            "n_exposed": n1, "n_exposed_cases": a, "n_unexposed": n0, "n_unexposed_cases": c,
            "p_outcome_exposed": a / n1, "p_outcome_baseline": (a + c) / 20_000, "odds_ratio": np.exp(log_or),
            "or_ci_low": np.exp(log_or - 1.96 * se), "or_ci_high": np.exp(log_or + 1.96 * se), "p_value": p,
            "score_p": p, "score_log_or": log_or, "adj_log_or": log_or, "adj_odds_ratio": np.exp(log_or),
            "adj_or_ci_low": np.exp(log_or - 1.96 * se), "adj_or_ci_high": np.exp(log_or + 1.96 * se),
            "adj_p_value": p, "flag": None}))
    df = pd.concat(frames, ignore_index=True)
    for split in ("discovery", "validation"):
        s = df["split"] == split
        df.loc[s, "q_value"] = bh_qvalues(df.loc[s, "p_value"].to_numpy())
        df.loc[s, "score_q"] = df.loc[s, "q_value"]
    disc = (df["split"] == "discovery") & (df["score_q"] < 0.05) & (df["n_exposed_cases"] >= 3)
    df["rank"] = np.nan
    df.loc[disc, "rank"] = df[disc].groupby("outcome_id")["adj_or_ci_low"].rank(ascending=False, method="first")
    df["n_tested"] = n_f
    df["n_ranked"] = df.groupby(["split", "outcome_id"])["rank"].transform("count")
    key = ["feature_id", "outcome_id"]
    val = df[df["split"] == "validation"].set_index(key)
    d = df[disc].set_index(key)
    rep = (np.sign(val.loc[d.index, "adj_log_or"]) == np.sign(d["adj_log_or"])) & (val.loc[d.index, "p_value"] < 0.05)
    df["replicated"] = pd.array(pd.Series(rep.to_numpy(), index=df.index[disc]).reindex(df.index), dtype="boolean")
    return df


def with_families(rng: np.random.Generator, assoc: pd.DataFrame, n_fam: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n_fam` families of 3 features (a parent and two others): each family tested like a
    feature (its parent's rows as the family's) and ranked in its parent's place; its
    members tested, not ranked (as the association stage ranks findings). FAMILIES rows."""
    a = assoc.assign(unit="feature")
    n_f = int(a["feature_id"].max()) + 1
    ids = rng.permutation(n_f)[: 3 * n_fam].reshape(n_fam, 3)
    parents = ids[:, 0]
    fam = a[a["feature_id"].isin(parents)].assign(unit="family")
    a.loc[a["feature_id"].isin(ids.ravel()), "rank"] = np.nan
    fams = pd.DataFrame({"family_id": parents.astype(np.int32), "parent_feature": parents.astype(np.int32),
                         "n_members": 3, "members": [list(map(int, r)) for r in ids],
                         "member_link": [["parent", "nested", "direction"]] * n_fam,
                         "member_containment": [[1.0, 0.8, 0.4]] * n_fam, "member_cosine": [[1.0, 0.3, 0.8]] * n_fam,
                         "n_active": 400, "parent_coverage": 0.9, "mean_containment": 0.6, "mean_cosine": 0.55})
    return pd.concat([a, fam], ignore_index=True), fams


def volumes(folder: Path, n: int, rng: np.random.Generator) -> list[str]:
    """Abdominal-CT-like phantoms, 128 x 128 x 64 at 1.5 x 1.5 x 3 mm, with texture."""
    folder.mkdir(parents=True, exist_ok=True)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, k) for k in (128, 128, 64)), indexing="ij")
    out = []
    for i in range(n):
        vol = np.full(x.shape, -1000.0, np.float32)
        body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1
        vol[body] = 40.0
        vol[((x - 0.35) / 0.3) ** 2 + ((y - 0.05) / 0.3) ** 2 + (z / 0.6) ** 2 <= 1] = 60.0 + 10 * i
        vol[(x / 0.08) ** 2 + ((y + 0.45) / 0.08) ** 2 <= 1] = 700.0
        vol += rng.normal(0, 25, x.shape).astype(np.float32) * body
        path = folder / f"ct_{i}.nii.gz"
        nib.save(nib.Nifti1Image(vol, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
        out.append(str(path))
    return out


def survival(rng: np.random.Generator, assoc: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    hits = assoc[(assoc["split"] == "discovery") & (assoc["rank"] <= 3)]
    rows, curves = [], []
    for h in hits.to_dict("records"):
        for split in ("discovery", "validation"):
            n1, n0 = 300, 3000
            t = rng.uniform(30, 1461, n1 + n0)
            ev = rng.uniform(size=n1 + n0) < np.r_[np.full(n1, 0.08), np.full(n0, 0.03)]
            d = pd.DataFrame({"time_days": t, "event": ev, "exposed": np.r_[np.ones(n1), np.zeros(n0)].astype(int)})
            key = {k: h[k] for k in ("modality", "unit", "feature_id", "outcome_id")} | {"split": split}
            curves.append(km_curve(d, 4 * 365.25).assign(**key))
            rows.append({**key, "rank": h["rank"], "window_years": 4.0, "n": n1 + n0, "n_exposed": n1,
                         "n_events": int(ev.sum()), "n_exposed_events": int(ev[:n1].sum()), "hazard_ratio": 2.6,
                         "hr_ci_low": 1.7, "hr_ci_high": 3.9, "hr_p": 1e-6, "cuminc_exposed": 0.08,
                         "cuminc_exposed_low": 0.05, "cuminc_exposed_high": 0.11, "cuminc_unexposed": 0.03,
                         "cuminc_unexposed_low": 0.025, "cuminc_unexposed_high": 0.035, "logrank_p": 1e-6,
                         "flag": None})
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def synthetic_inputs(n_f: int, n_o: int, seed: int, work: Path, n_fam: int) -> dict:
    rng = np.random.default_rng(seed)
    n_studies = 20_000
    assoc, fams = with_families(rng, associations(rng, n_f, n_o), n_fam)
    units = pd.concat([pd.DataFrame({"unit": "feature", "feature_id": np.arange(n_f)}),
                       pd.DataFrame({"unit": "family", "feature_id": fams["family_id"].astype(int)})],
                      ignore_index=True)
    n_u = len(units)
    terms = [list(rng.choice(WORDS, 6, replace=False)) for _ in range(n_u)]
    interp = pd.DataFrame({
        "modality": "image", "unit": units["unit"], "feature_id": units["feature_id"],
        "label": ["; ".join(t[:3]) for t in terms],
        "top_terms": terms, "term_scores": [sorted(rng.uniform(2, 8, 6), reverse=True) for _ in range(n_u)],
        "n_train_top": 100, "n_train_control": 300, "n_heldout_top": 100,
        "n_heldout_top_hits": rng.integers(40, 99, n_u),
        "n_heldout_control": 300, "n_heldout_control_hits": rng.integers(1, 60, n_u),
        "heldout_balanced_accuracy": rng.uniform(0.6, 0.95, n_u), "ba_ci_low": 0.5, "ba_ci_high": 0.97, "flag": None})
    k = 20
    acts = pd.DataFrame({"study_id": np.repeat([f"st{i}" for i in range(n_studies)], k),
                         "feature_id": rng.integers(0, n_f, n_studies * k).astype(np.int32),
                         "value": rng.gamma(2.0, 1.0, n_studies * k).astype(np.float32)})
    counts = acts.groupby("feature_id").size().reindex(units["feature_id"], fill_value=0).to_numpy()
    stats = pd.DataFrame({"modality": "image", "unit": units["unit"], "feature_id": units["feature_id"],
                          "n_studies": n_studies,
                          "n_active": counts, "frac_active": counts / n_studies, "mean_active": 2.0,
                          "max_value": 9.0, "threshold": 3.5, "cohort_size": np.maximum(counts // 10, 0),
                          "testable": counts >= 20, "flag": None})
    paths = volumes(work / "ct", 8, rng)
    study = [f"ct{i}" for i in range(len(paths))]
    coh = pd.DataFrame([{"unit": u, "feature_id": f, "study_id": study[(f + r) % len(study)], "role": role,
                         "value": 1.0, "rank": r} for u, f in units.itertuples(index=False)
                        for role, n in (("exposed", 4), ("control", 2)) for r in range(1, n + 1)])
    reports = pd.DataFrame([{"modality": "image", "unit": u, "feature_id": f, "study_id": f"st{r}", "rank": r,
                             "value": 9.0 - r, "report_text": " ".join(rng.choice(WORDS, 220)).capitalize() + "."}
                            for u, f in units.itertuples(index=False) for r in range(1, 9)])
    surv, curves = survival(rng, assoc)
    outcomes = pd.DataFrame({"outcome_id": [f"outcome_{o:03d}" for o in range(n_o)],
                             "name": [f"Outcome {o} (ICD-10 block)" for o in range(n_o)], "window_years": 4.0,
                             "n_eligible": 19_000, "n_cases": rng.integers(20, 900, n_o)})
    fam_acts = acts[acts["feature_id"].isin(fams["family_id"])].rename(columns={"feature_id": "family_id"})
    return {"assoc": assoc, "interp": interp, "stats": stats, "acts": acts, "cohorts": coh, "families": fams,
            "family_acts": fam_acts,
            "paths": dict(zip(study, paths, strict=True)), "reports": reports, "surv": surv, "curves": curves,
            "outcomes": outcomes}


def synthetic_part(n_f: int, n_o: int, seed: int, n_fam: int, keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="report_size_") as tmp:
        work = keep or Path(tmp)
        t0 = time.perf_counter()
        x = synthetic_inputs(n_f, n_o, seed, work, n_fam)
        t1 = time.perf_counter()
        cfg = ReportConfig()
        stats = x["stats"].drop(columns="modality")
        tables = report_tables(x["assoc"], cfg, 0.05, {"image": stats}, {"image": x["acts"]}, {"image": x["cohorts"]},
                               x["paths"], families={"image": Families(x["families"], x["family_acts"])})
        t2 = time.perf_counter()
        render_report(work / "report", x["assoc"], x["interp"], x["stats"], x["reports"], x["outcomes"],
                      {"run": "synthetic"}, cfg, x["surv"], x["curves"], tables,
                      families=x["families"].assign(modality="image"))
        t3 = time.perf_counter()
        s = sizes(work / "report")
        pages = tables.pages
        return {"features": n_f, "families": n_fam, "outcomes": n_o, "pairs_per_split": (n_f + n_fam) * n_o,
                "ranked_pairs": int(x["assoc"]["rank"].notna().sum()), "units_eligible_for_a_page": len(pages),
                "page_cap": cfg.max_feature_pages, **s,
                "total_vs_cap": round(s["total_bytes"] / CAPS["synthetic_total_bytes"], 4),
                "max_page_vs_cap": round(s["max_feature_page_bytes"] / CAPS["feature_page_bytes"], 4),
                "seconds": {"inputs": round(t1 - t0, 1), "tables": round(t2 - t1, 1), "render": round(t3 - t2, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo-dir", type=Path, help="a finished `medconcepts demo --out DIR`")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--features", type=int, default=8192)
    ap.add_argument("--outcomes", type=int, default=300)
    ap.add_argument("--families", type=int, default=400, help="feature families of 3 among the features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="write the synthetic report here (default: a temporary folder)")
    args = ap.parse_args()
    out: dict = {"caps": CAPS, "loadavg": os.getloadavg()}
    if not args.skip_demo:
        out["demo"] = demo_part(args.demo_dir)
    out["synthetic"] = synthetic_part(args.features, args.outcomes, args.seed, args.families, args.keep)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
