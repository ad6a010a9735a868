"""Report inputs shared by the HTML and browser tests: associations whose odds ratios and
CIs are computed from their 2x2 counts, interpretations, feature statistics, top reports
(with planted markup), and a tiny CT volume for the thumbnails."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa

from data_contracts.config import ReportConfig
from data_contracts.schemas import ASSOCIATIONS, FEATURE_STATS, INTERPRETATIONS
from models.figures.build import report_tables
from reports.html import render_report

EXTERNAL = re.compile(r"https?://|//cdn|src\s*=\s*[\"']?\s*https?", re.IGNORECASE)
N_FEATURES = 6
OUTCOMES = pd.DataFrame(
    {
        "outcome_id": ["liver_cancer", "heart_failure"],
        "name": ["Primary liver cancer", "First heart failure"],
        "window_years": [4.0, 2.0],
        "n_eligible": [1000, 980],
        "n_cases": [40, 55],
        "n_excluded_followup": [0, 30],
    }
)


def associations(seed: int = 0) -> pd.DataFrame:
    """2x2 tables with odds ratios and Woolf CIs computed from the counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for modality in ("report", "image"):
        for o in OUTCOMES.itertuples():
            for f in range(N_FEATURES):
                n1 = int(rng.integers(50, 150))
                a = int(rng.integers(1, 30))
                n0, c = o.n_eligible - n1, o.n_cases - a if o.n_cases > a else 1
                b, dd = n1 - a, n0 - c
                orr = a * dd / (b * c)
                se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / dd)
                rows.append(
                    {
                        "modality": modality,
                        "unit": "feature",
                        "feature_id": f,
                        "outcome_id": o.outcome_id,
                        "n_exposed": n1,
                        "n_exposed_cases": a,
                        "n_unexposed": n0,
                        "n_unexposed_cases": c,
                        "p_outcome_exposed": a / n1,
                        "p_outcome_baseline": o.n_cases / o.n_eligible,
                        "odds_ratio": orr,
                        "or_ci_low": orr * np.exp(-1.96 * se),
                        "or_ci_high": orr * np.exp(1.96 * se),
                        "p_value": float(rng.uniform(1e-6, 0.5)),
                        "flag": None,
                    }
                )
    df = pd.DataFrame(rows)
    df["q_value"] = np.minimum(df["p_value"] * 4, 1.0)
    df["rank"] = pd.array([pd.NA] * len(df), dtype="Int32")
    sel = (df["modality"] == "report") & (df["outcome_id"] == "liver_cancer")
    df.loc[sel & (df["feature_id"] == 3), "rank"] = 1
    df.loc[sel & (df["feature_id"] == 1), "rank"] = 2
    df["n_ranked"] = np.where(sel, 2, 0).astype(np.int32)
    df["n_tested"] = np.int32(N_FEATURES)
    # an untested row: NaN statistics must render as "–"
    bad = (df["modality"] == "image") & (df["feature_id"] == 5)
    df.loc[bad, ["odds_ratio", "or_ci_low", "or_ci_high", "p_value", "q_value"]] = np.nan
    df.loc[bad, "flag"] = "feature not testable"
    df["p_bonferroni"] = np.minimum(df["p_value"] * len(df), 1.0)
    df["n_adjusted"] = df["n_exposed"] + df["n_unexposed"]
    df["n_excluded_followup"], df["n_exposed_excluded_followup"] = 7, 2
    df["score_p"], df["score_q"] = df["p_value"], df["q_value"]
    df["score_log_or"] = np.log(df["odds_ratio"])
    df["score_se"] = 0.2
    df["adj_method"] = "logistic"
    df["adj_log_or"] = df["score_log_or"] * 0.9
    df["adj_odds_ratio"] = np.exp(df["adj_log_or"])
    df["adj_or_ci_low"], df["adj_or_ci_high"] = df["adj_odds_ratio"] * 0.7, df["adj_odds_ratio"] * 1.4
    df["adj_p_value"] = df["p_value"]
    df["replication_p_adj"] = np.where(df["rank"].notna(), 0.01, np.nan)
    df["replicated"] = pd.array(np.where(df["rank"].notna(), True, None), dtype="boolean")
    df[["sd_odds_ratio", "sd_ci_low", "sd_ci_high", "sd_p_value"]] = np.nan  # option or_per_sd off
    df["sd_flag"] = None
    # the validation half is in the artifact too; the report shows discovery rows only
    val = df.assign(split="validation")
    val["rank"] = pd.array([pd.NA] * len(val), dtype="Int32")
    df = pd.concat([df.assign(split="discovery"), val], ignore_index=True)
    return df[ASSOCIATIONS.schema.names]


def interpretations() -> pd.DataFrame:
    rows = []
    for modality in ("report", "image"):
        for f in range(N_FEATURES):
            rows.append(
                {
                    "modality": modality,
                    "unit": "feature",
                    "feature_id": f,
                    "label": "cirrhotic liver; <b>varices</b>" if f == 3 else f"concept {f}",
                    "top_terms": ["cirrhotic liver", "varices", "no ascites"] if f == 3 else [],
                    "term_scores": [5.1, 4.2, 3.0] if f == 3 else [],
                    "n_train_top": 50,
                    "n_train_control": 150,
                    "n_heldout_top": 50,
                    "n_heldout_top_hits": 43,
                    "n_heldout_control": 150,
                    "n_heldout_control_hits": 7,
                    "heldout_balanced_accuracy": 0.9066666,
                    "flag": None,
                    # interpretations v2 (issue 13); kept by `roundtrip` whatever the contract
                    "ba_ci_low": 0.84, "ba_ci_high": 0.95, "baseline_label": "concept 9",
                    "baseline_balanced_accuracy": 0.48, "method": "keywords",
                    "judge": "keywords", "named_from": "the feature's own report texts",
                    "explanation": "Cirrhotic liver with varices." if f == 3 else None,
                    "n_candidates": 1, "decile_recall": [0.9] * 10,
                }
            )
    df = pd.DataFrame(rows)
    return df.reindex(columns=list(dict.fromkeys([*INTERPRETATIONS.schema.names, *df.columns])))


def stats() -> pd.DataFrame:
    rows = []
    for _ in ("report", "image"):
        for f in range(N_FEATURES + 2):
            dead = f >= N_FEATURES
            rows.append(
                {
                    "unit": "feature",
                    "feature_id": f,
                    "family_id": None,
                    "n_studies": 1000,
                    "n_active": 0 if dead else 300,
                    "frac_active": 0.0 if dead else 0.3,
                    "mean_active": None if dead else 1.5,
                    "max_value": None if dead else 4.0,
                    "threshold": None if dead else 2.0,
                    "cohort_size": 0 if dead else 100,
                    "testable": not dead,
                    "flag": "dead: never fires" if dead else None,
                }
            )
    return pd.DataFrame(rows)[FEATURE_STATS.schema.names].assign(
        modality=["report"] * (N_FEATURES + 2) + ["image"] * (N_FEATURES + 2)
    )


def top_reports() -> pd.DataFrame:
    rows = []
    for modality in ("report", "image"):
        for f in range(N_FEATURES):
            for r in range(1, 13):
                text = f"FINDINGS: Cirrhotic liver with varices. Report {r}."
                if r == 1:
                    text = "<script>alert(1)</script> see http://evil.example/x.js & //cdn.x"
                if r == 2:
                    text = None
                rows.append(
                    {
                        "modality": modality,
                        "unit": "feature",
                        "feature_id": f,
                        "study_id": f"S{f}_{r}",
                        "rank": r,
                        "value": 10.0 - r,
                        "report_text": text,
                    }
                )
    return pd.DataFrame(rows)


def roundtrip(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """As the report task reads it: parquet types (nullable ints -> float, lists -> arrays).
    Columns the contract does not name (yet) keep their inferred types."""
    t = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    for c in (c for c in df.columns if c not in schema.names):
        t = t.append_column(c, pa.array(df[c].tolist()))
    return t.to_pandas()




# ---------------------------------------------------------------- planted markup
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
JS_URL = "javascript:window.__pwned = 3"
PAYLOAD = f"{SCRIPT} {IMG} {JS_URL}"


def with_payloads(interp: pd.DataFrame, outcomes: pd.DataFrame, reports: pd.DataFrame,
                  canary: str = "http://127.0.0.1:9") -> tuple[pd.DataFrame, ...]:
    """The three payloads in a label, a term, an outcome name and a report text, plus markup
    that would fetch from `canary` if it ever became live."""
    interp, outcomes, reports = interp.copy(), outcomes.copy(), reports.copy()
    fetch = f'<img src="{canary}/img.png"><script src="{canary}/x.js"></script><a href="{canary}/a">a</a>'
    hit = (interp["modality"] == "report") & (interp["feature_id"] == 1)
    interp.loc[hit, "label"] = PAYLOAD
    interp.loc[hit, "top_terms"] = pd.Series([[JS_URL, IMG]] * int(hit.sum()), index=interp.index[hit])
    interp.loc[hit, "term_scores"] = pd.Series([[2.0, 1.0]] * int(hit.sum()), index=interp.index[hit])
    outcomes.loc[1, "name"] = f"Heart failure {IMG}"
    first = (reports["modality"] == "report") & (reports["feature_id"] == 3) & (reports["rank"] == 3)
    reports.loc[first, "report_text"] = f"Impression: {PAYLOAD} <a href=\"{JS_URL}\">click</a> {fetch}"
    interp.loc[interp["feature_id"] == 3, "label"] += f" {fetch}"
    return interp, outcomes, reports


# ---------------------------------------------------------------- CT volumes and cohorts
def write_volume(path: Path, seed: int, shape: tuple[int, int, int] = (40, 36, 24)) -> Path:
    """A small CT-like NIfTI (RAS, 2 x 2 x 4 mm): air, a body ellipse of soft tissue and a
    bright lesion whose position depends on the seed."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    vol = np.full(shape, -1000.0, np.float32)
    vol[(x / 0.8) ** 2 + (y / 0.6) ** 2 <= 1] = 40.0
    c = rng.uniform(-0.3, 0.3, 3)
    vol[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 0.05] = 200.0
    vol += rng.normal(0, 5, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 4.0, 1.0])), str(path))
    return path


def image_cohorts(folder: Path, n_features: int, n_top: int = 4, n_control: int = 2) -> tuple[pd.DataFrame, dict]:
    """COHORTS rows of the image modality over a few volumes, and study_id -> path (one
    study without an image, to show the error cell)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str | None] = {f"IMG-{i:03d}": str(write_volume(folder / f"v{i}.nii.gz", i)) for i in range(6)}
    paths["IMG-NOPIX"] = None
    ids = sorted(paths)
    rows = []
    for f in range(n_features):
        for r in range(1, n_top + 1):
            rows.append({"unit": "feature", "feature_id": f, "study_id": ids[(f + r) % len(ids)], "role": "exposed",
                         "value": 5.0 - r, "rank": r})
        for r in range(1, n_control + 1):
            rows.append({"unit": "feature", "feature_id": f, "study_id": ids[(f + 3 * r) % 6], "role": "control",
                         "value": 0.0, "rank": r})
    return pd.DataFrame(rows), paths


def activations(n_studies: int = 1000, seed: int = 1) -> pd.DataFrame:
    """Sparse ACTIVATIONS rows of both modalities' features (300 active studies each)."""
    rng = np.random.default_rng(seed)
    frames = []
    for f in range(N_FEATURES):
        ids = rng.choice(n_studies, 300, replace=False)
        frames.append(pd.DataFrame({"study_id": [f"S{i}" for i in ids], "feature_id": f,
                                    "value": rng.gamma(2.0, 0.8, 300).astype(np.float32)}))
    return pd.concat(frames, ignore_index=True)


def survival_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """SURVIVAL and KM_CURVES rows of report #3 x liver cancer: 5 exposed events (a small
    cell: no exposed curve), 30 unexposed, from the pipeline's own KM code."""
    from models.stats.survival import km_curve

    rng = np.random.default_rng(0)
    n1, n0 = 60, 240
    t = rng.uniform(30, 1461, n1 + n0)
    event = np.zeros(n1 + n0, bool)
    event[rng.choice(n1, 5, replace=False)] = True
    event[n1 + rng.choice(n0, 30, replace=False)] = True
    d = pd.DataFrame({"time_days": t, "event": event, "exposed": (np.arange(n1 + n0) < n1).astype(int)})
    key = {"modality": "report", "unit": "feature", "feature_id": 3, "outcome_id": "liver_cancer"}
    curves = pd.concat([km_curve(d, 4 * 365.25).assign(**key, split=s) for s in ("discovery", "validation")])
    surv = pd.DataFrame([{**key, "split": s, "rank": 1, "window_years": 4.0, "n": n1 + n0, "n_exposed": n1,
                          "n_events": 35, "n_exposed_events": 5, "hazard_ratio": 1.8, "hr_ci_low": 0.7,
                          "hr_ci_high": 4.6, "hr_p": 0.2, "cuminc_exposed": 0.09, "cuminc_exposed_low": 0.04,
                          "cuminc_exposed_high": 0.2, "cuminc_unexposed": 0.13, "cuminc_unexposed_low": 0.09,
                          "cuminc_unexposed_high": 0.18, "logrank_p": 0.3, "flag": None}
                         for s in ("discovery", "validation")])
    return surv, curves.reset_index(drop=True)


def render_fixture(out: Path, cfg: ReportConfig, payloads: bool = False,
                   canary: str = "http://127.0.0.1:9") -> list[Path]:
    """The whole report over these fixtures, figure tables made by `models/figures` (CT
    thumbnails read from real NIfTI files through the encoders' loader)."""
    assoc = roundtrip(associations(), ASSOCIATIONS.schema)
    interp = roundtrip(interpretations(), INTERPRETATIONS.schema)
    outcomes, reports = OUTCOMES, top_reports()
    if payloads:
        interp, outcomes, reports = with_payloads(interp, outcomes, reports, canary)
    st = stats()
    cohorts, paths = image_cohorts(out.parent / f"{out.name}-volumes", N_FEATURES)
    per_mod = {m: g.drop(columns="modality") for m, g in st.groupby("modality")}
    acts = activations()
    tables = report_tables(assoc, cfg, 0.05, per_mod, {"report": acts, "image": acts}, {"image": cohorts}, paths)
    surv, curves = survival_frames()
    return render_report(out, assoc, interp, st, reports, outcomes, {"run": "unit <test>", "created": "2026-01-01"},
                         cfg, surv, curves, tables)
