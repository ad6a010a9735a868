"""Render the HTML report as an artifact (pages plus the tables behind every figure),
publish a copy, and post the top hits with the report's path to the Prefect UI."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig, ReportConfig, load_outcome_definitions
from data_contracts.report_tables import ReportTables
from data_contracts.storage import Storage, is_url
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.figures.build import report_tables
from models.figures.pages import top_hits
from reports.cells import SmallCells
from reports.html import render_report
from reports.markdown import summary_markdown
from tasks.interpret import report_texts
from tasks.stage import run_stage

SUMMARY = "summary.md"
ARTIFACT_KEY = "medconcepts-report"


class ReportModality(NamedTuple):
    """One modality's artifacts the report reads."""

    feature_stats: ArtifactRef
    cohorts: ArtifactRef
    interpretations: ArtifactRef
    activations: ArtifactRef | None = None  # for the activation histograms


def _top_reports(
    store: ArtifactStore, studies: ArtifactRef, cohorts: Mapping[str, pd.DataFrame], n: int
) -> pd.DataFrame:
    texts = report_texts(store, studies)
    frames = []
    for modality, c in cohorts.items():
        top = c[(c["role"] == "exposed") & (c["rank"] <= n)]
        frames.append(top.assign(modality=modality, report_text=top["study_id"].map(texts)))
    cols = ["modality", "feature_id", "study_id", "rank", "value", "report_text"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _outcome_table(labels: pd.DataFrame, outcomes_path: Path) -> pd.DataFrame:
    defs = load_outcome_definitions(outcomes_path)
    elig = labels[labels["eligible"]]
    counts = elig.groupby("outcome_id").agg(n_eligible=("study_id", "size"), n_cases=("event", "sum"))
    rows = [{"outcome_id": o.id, "name": o.name, "window_years": o.window_years} for o in defs.outcomes]
    return pd.DataFrame(rows).join(counts, on="outcome_id").fillna({"n_eligible": 0, "n_cases": 0})


def _methods(store: ArtifactStore, associations: ArtifactRef) -> pd.DataFrame | None:
    """The associations artifact's methods table (older artifacts have none)."""
    tables = store.manifest(associations).get("tables", {})
    return store.read_table(associations, "methods") if "methods" in tables else None


def association_alpha(store: ArtifactStore, associations: ArtifactRef) -> float:
    """The FDR level the associations were ranked at, from their manifest."""
    params = store.manifest(associations).get("params", {}).get("association", {})
    return AssociationConfig.model_validate(params).alpha


def _tables(store: ArtifactStore, studies: ArtifactRef, assoc: pd.DataFrame, cfg: ReportConfig, alpha: float,
            stats: Mapping[str, pd.DataFrame], cohorts: Mapping[str, pd.DataFrame],
            per_modality: Mapping[str, ReportModality]) -> ReportTables:
    acts = {m: store.read_table(r.activations) for m, r in per_modality.items() if r.activations is not None}
    paths = store.read_table(studies, columns=["study_id", "image_path"])
    image_paths = dict(zip(paths["study_id"], paths["image_path"].astype(object), strict=True))
    return report_tables(assoc, cfg, alpha, stats, acts or None, cohorts, image_paths)


def report_fn(
    store: ArtifactStore,
    studies: ArtifactRef,
    labels: ArtifactRef,
    associations: ArtifactRef,
    per_modality: Mapping[str, ReportModality],
    outcomes_path: Path,
    cfg: ReportConfig,
    run_name: str,
    survival: ArtifactRef | None = None,
) -> ArtifactRef:
    """The report artifact: `report/` (HTML), every figure table, and `summary.md`."""
    per_modality = {m: ReportModality(*r) for m, r in per_modality.items()}
    inputs = [studies, labels, associations] + [x for r in per_modality.values() for x in r if x is not None]
    inputs += [survival] if survival is not None else []
    params = {"report": cfg.model_dump(mode="json"), "run_name": run_name}

    def build(w: ArtifactWriter) -> None:
        stats = {m: store.read_table(r.feature_stats) for m, r in per_modality.items()}
        cohorts = {m: store.read_table(r.cohorts) for m, r in per_modality.items()}
        interp = pd.concat([store.read_table(r.interpretations) for r in per_modality.values()], ignore_index=True)
        assoc = store.read_table(associations)
        tables = _tables(store, studies, assoc, cfg, association_alpha(store, associations), stats, cohorts,
                         per_modality)
        for name, table, contract in tables.items():
            w.write_table(name, table, contract)
        outcomes = _outcome_table(store.read_table(labels), outcomes_path)
        run_info = {"run": run_name, "associations": associations.version, "studies": studies.version}
        render_report(
            w.path("report"), assoc, interp,
            pd.concat([s.assign(modality=m) for m, s in stats.items()], ignore_index=True),
            _top_reports(store, studies, cohorts, cfg.n_top_reports), outcomes, run_info, cfg,
            store.read_table(survival) if survival is not None else None,
            store.read_table(survival, "km_curves") if survival is not None else None,
            tables,
            _methods(store, associations),
        )
        labels_by = dict(zip(zip(interp["modality"].astype(str), interp["feature_id"].astype(int), strict=True),
                             interp["label"], strict=True))
        names = dict(zip(outcomes["outcome_id"].astype(str), outcomes["name"], strict=True))
        md = summary_markdown(top_hits(assoc, 3), names, labels_by, SmallCells(cfg.small_cell), cfg.title)
        w.path(SUMMARY).write_text(md, encoding="utf-8")

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


def summary_with_path(store: ArtifactStore, report: ArtifactRef, index: str) -> str:
    """The report artifact's top-hits Markdown with where the published report is."""
    md = store.file_path(report, SUMMARY).read_text(encoding="utf-8")
    where = index if is_url(index) else Path(index).resolve().as_uri()
    return f"{md}\nReport: `{index}` (open `{where}` in a browser)\n"


@task(name="render-report", cache_policy=NONE)
def render(
    store_root: str,
    studies: ArtifactRef,
    labels: ArtifactRef,
    associations: ArtifactRef,
    per_modality: dict[str, ReportModality],
    outcomes_path: str,
    cfg: ReportConfig,
    run_name: str,
    survival: ArtifactRef | None = None,
) -> ArtifactRef:
    return report_fn(ArtifactStore(store_root), studies, labels, associations, per_modality,
                     Path(outcomes_path), cfg, run_name, survival)


@task(name="publish-report", cache_policy=NONE)
def publish(store_root: str, report: ArtifactRef, dest: str) -> str:
    """Publish the report folder and post its top hits and path as a Prefect artifact."""
    store = ArtifactStore(store_root)
    index = publish_fn(store, report, dest)
    create_markdown_artifact(markdown=summary_with_path(store, report, index), key=ARTIFACT_KEY,
                             description="medconcepts: top hits and the HTML report's path")
    return index
