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
from models.figures.build import Families, report_tables
from models.figures.pages import top_hits
from reports.cells import SmallCells
from reports.html import render_report
from reports.markdown import summary_markdown
from tasks.interpret import report_texts
from tasks.outcomes import outcome_counts
from tasks.stage import run_stage

SUMMARY = "summary.md"
ARTIFACT_KEY = "medconcepts-report"


class ReportModality(NamedTuple):
    """One modality's artifacts the report reads."""

    feature_stats: ArtifactRef
    cohorts: ArtifactRef
    interpretations: ArtifactRef
    activations: ArtifactRef | None = None  # for the activation histograms
    families: ArtifactRef | None = None  # feature families (members, family activations)


def _top_reports(
    store: ArtifactStore, studies: ArtifactRef, cohorts: Mapping[str, pd.DataFrame], n: int
) -> pd.DataFrame:
    texts = report_texts(store, studies)
    frames = []
    for modality, c in cohorts.items():
        top = c[(c["role"] == "exposed") & (c["rank"] <= n)]
        top = top if "unit" in top.columns else top.assign(unit="feature")
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
    tables = store.manifest(associations).get("tables", {})
    return store.read_table(associations, "methods") if "methods" in tables else None


def association_alpha(store: ArtifactStore, associations: ArtifactRef) -> float:
    """The FDR level the associations were ranked at, from their manifest."""
    params = store.manifest(associations).get("params", {}).get("association", {})
    return AssociationConfig.model_validate(params).alpha


def _families(store: ArtifactStore, per_modality: Mapping[str, ReportModality]) -> dict[str, Families]:
    return {m: Families(store.read_table(r.families), store.read_table(r.families, "activations"))
            for m, r in per_modality.items() if r.families is not None}


def _tables(store: ArtifactStore, studies: ArtifactRef, assoc: pd.DataFrame, cfg: ReportConfig, alpha: float,
            stats: Mapping[str, pd.DataFrame], cohorts: Mapping[str, pd.DataFrame],
            per_modality: Mapping[str, ReportModality], families: Mapping[str, Families]) -> ReportTables:
    acts = {m: store.read_table(r.activations) for m, r in per_modality.items() if r.activations is not None}
    paths = store.read_table(studies, columns=["study_id", "image_path"])
    image_paths = dict(zip(paths["study_id"], paths["image_path"].astype(object), strict=True))
    return report_tables(assoc, cfg, alpha, stats, acts or None, cohorts, image_paths, families=families)


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
        fams = _families(store, per_modality)
        tables = _tables(store, studies, assoc, cfg, association_alpha(store, associations), stats, cohorts,
                         per_modality, fams)
        for name, table, contract in tables.items():
            w.write_table(name, table, contract)
        # per-outcome counts read in batches (hospital scale: the labels are ~60 M rows)
        outcomes = outcome_table(outcome_counts(store, labels, _binary_controls(store, associations)), outcomes_path)
        run_info = {"run": run_name, "associations": associations.version, "studies": studies.version}
        render_report(
            w.path("report"), assoc, interp,
            pd.concat([s.assign(modality=m) for m, s in stats.items()], ignore_index=True),
            _top_reports(store, studies, cohorts, cfg.n_top_reports), outcomes, run_info, cfg,
            store.read_table(survival) if survival is not None else None,
            store.read_table(survival, "km_curves") if survival is not None else None,
            tables,
            _methods(store, associations),
            pd.concat([f.families.assign(modality=m) for m, f in fams.items()], ignore_index=True) if fams else None,
        )
        units = interp["unit"].astype(str) if "unit" in interp.columns else ["feature"] * len(interp)
        labels_by = dict(zip(zip(interp["modality"].astype(str), units, interp["feature_id"].astype(int), strict=True),
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
