"""Render the self-contained HTML report as an artifact and publish a copy."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import ReportConfig, load_outcome_definitions
from data_contracts.storage import Storage, is_url
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from reports.html import render_report
from tasks.interpret import report_texts
from tasks.outcomes import data_path, outcome_counts
from tasks.stage import run_stage


def _top_reports(
    store: ArtifactStore, studies: ArtifactRef, cohorts: Mapping[str, ArtifactRef], n: int
) -> pd.DataFrame:
    texts = report_texts(store, studies)
    frames = []
    for modality, ref in cohorts.items():
        c = store.read_table(ref)
        top = c[(c["role"] == "exposed") & (c["rank"] <= n)]
        frames.append(top.assign(modality=modality, report_text=top["study_id"].map(texts)))
    cols = ["modality", "unit", "feature_id", "study_id", "rank", "value", "report_text"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def outcome_table(counts: pd.DataFrame, outcomes_path: Path) -> pd.DataFrame:
    """Per outcome: eligible studies, cases, and the eligible event-free studies the binary
    analyses leave out for short follow-up (counts: tasks.outcomes.outcome_counts)."""
    defs = load_outcome_definitions(outcomes_path)
    rows = [{"outcome_id": o.id, "name": o.name, "window_years": o.window_years} for o in defs.outcomes]
    zero = {"n_eligible": 0, "n_cases": 0, "n_excluded_followup": 0}
    return pd.DataFrame(rows).join(counts, on="outcome_id").fillna(zero).astype(
        {k: "int64" for k in zero})


def _binary_controls(store: ArtifactStore, associations: ArtifactRef) -> str:
    """The follow-up rule the associations were computed under (their manifest's params)."""
    params = store.manifest(associations).get("params", {}).get("association", {})
    return str(params.get("binary_controls", "all"))


def _methods(store: ArtifactStore, associations: ArtifactRef) -> pd.DataFrame | None:
    """The associations artifact's methods table (older artifacts have none)."""
    return store.read_table(associations, "methods") if "methods" in store.manifest(associations).get(
        "tables", {}) else None


def report_fn(
    store: ArtifactStore,
    studies: ArtifactRef,
    labels: ArtifactRef,
    associations: ArtifactRef,
    per_modality: Mapping[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef, ArtifactRef]],
    outcomes_path: Path,
    cfg: ReportConfig,
    run_name: str,
    survival: ArtifactRef | None = None,
) -> ArtifactRef:
    """`per_modality`: modality -> (feature_stats, cohorts, interpretations, families) refs."""
    inputs = [studies, labels, associations] + [r for t in per_modality.values() for r in t]
    inputs += [survival] if survival is not None else []
    params = {"report": cfg.model_dump(), "run_name": run_name}

    def build(w: ArtifactWriter) -> None:
        stats = pd.concat(
            [store.read_table(s).assign(modality=m) for m, (s, _, _, _) in per_modality.items()], ignore_index=True
        )
        interp = pd.concat([store.read_table(i) for _, _, i, _ in per_modality.values()], ignore_index=True)
        fams = pd.concat([store.read_table(f).assign(modality=m) for m, (_, _, _, f) in per_modality.items()],
                         ignore_index=True)
        run_info = {"run": run_name, "associations": associations.version, "studies": studies.version}
        render_report(
            w.path("report"),
            # The report shows the discovery half (ranks live there); validation enters
            # through each row's `replicated`.
            pq.read_table(data_path(store, associations), filters=[("split", "=", "discovery")]).to_pandas(),
            interp,
            stats,
            _top_reports(store, studies, {m: c for m, (_, c, _, _) in per_modality.items()}, cfg.n_top_reports),
            outcome_table(outcome_counts(store, labels, _binary_controls(store, associations)), outcomes_path),
            run_info,
            cfg,
            store.read_table(survival) if survival is not None else None,
            store.read_table(survival, "km_curves") if survival is not None else None,
            fams,
            _methods(store, associations),
        )

    return run_stage(store, "report", None, inputs, params, build)


def publish_fn(store: ArtifactStore, report: ArtifactRef, dest: str | Path) -> str:
    """Copy the verified report folder to `dest`, a local folder (replaced whole) or an
    fsspec URL (pages first, index.html last, so the index never links a missing page).
    Returns where index.html is."""
    src = store.local_dir(report) / "report"
    if is_url(dest):
        target = Storage(dest)
        files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name == "index.html", str(p)))
        for f in files:
            target.put(f, f.relative_to(src).as_posix())
        return target.url_of("index.html")
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return str(dest / "index.html")


@task(name="render-report", cache_policy=NONE)
def render(
    store_root: str,
    studies: ArtifactRef,
    labels: ArtifactRef,
    associations: ArtifactRef,
    per_modality: dict[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef, ArtifactRef]],
    outcomes_path: str,
    cfg: ReportConfig,
    run_name: str,
    survival: ArtifactRef | None = None,
) -> ArtifactRef:
    return report_fn(ArtifactStore(store_root), studies, labels, associations, per_modality,
                     Path(outcomes_path), cfg, run_name, survival)


@task(name="publish-report", cache_policy=NONE)
def publish(store_root: str, report: ArtifactRef, dest: str) -> str:
    return publish_fn(ArtifactStore(store_root), report, dest)
