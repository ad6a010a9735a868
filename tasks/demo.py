"""Demo tasks: generate the synthetic cohort (once per DIR) and check the run against truth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import (
    CohortConfig,
    CTRadiomicsConfig,
    InputsConfig,
    InterpretConfig,
    MiniLMConfig,
    ModalityConfig,
    RunConfig,
    SAEConfig,
    SAESweepConfig,
    dump_run_config,
    load_run_config,
)
from data_contracts.store import ArtifactRef, ArtifactStore
from models.demo.ceiling import truth_ba
from models.demo.check import check_passed, demo_check, label_check
from models.demo.cohort import DemoCohortConfig, generate_demo_cohort, n_studies
from models.demo.reports import FINDING_NAMES
from models.interpret.units import make_docs
from tasks.interpret import report_texts, study_subjects
from tasks.progress import progress_bar

MARKER = ".generated.json"
LABELS_FILE = "demo_labels.json"


def demo_run_config(out: Path, inputs: InputsConfig) -> RunConfig:
    """The demo's run config: both modalities, offline encoders, a small SAE."""
    return RunConfig(
        name="medconcepts demo",
        store=out / "store",
        report_dir=out / "report",
        inputs=inputs,
        modalities=(
            ModalityConfig(modality="report", encoder=MiniLMConfig()),
            ModalityConfig(modality="image", encoder=CTRadiomicsConfig()),
        ),
        # A demo-sized sweep: Matryoshka (selected: it is the base config) and plain TopK.
        sae=SAEConfig(variant="matryoshka_topk", n_features=64, k=8, epochs=40),
        sae_sweep=SAESweepConfig(variants=("matryoshka_topk", "topk"), n_features=(64,), k=(8,)),
        cohort=CohortConfig(),
    )


def generate_fn(out: Path, cfg: DemoCohortConfig) -> Path:
    """Write the cohort under `out/input` unless the same config already did; return the
    path of the run config YAML."""
    inp = out / "input"
    params = dataclasses.asdict(cfg)
    marker = inp / MARKER
    if not (marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(params))):
        with progress_bar(n_studies(cfg), "generate demo cohort", "study") as bar:
            generate_demo_cohort(inp, cfg, progress=bar.update)
        marker.write_text(json.dumps(params))
    inputs = InputsConfig(studies=inp / "studies.parquet", events=inp / "events.parquet",
                          outcomes=inp / "outcomes.yaml")
    path = out / "demo_config.yaml"
    dump_run_config(demo_run_config(out, inputs), path)
    return path


def check_fn(store: ArtifactStore, truth: Path, assoc: ArtifactRef, cohorts: dict[str, ArtifactRef],
             dest: Path, interpretations: dict[str, ArtifactRef] | None = None,
             families: dict[str, ArtifactRef] | None = None, studies: ArtifactRef | None = None,
             interpretation: InterpretConfig | None = None) -> bool:
    """Write the link check to `dest` and, with interpretations, the label check to
    `demo_labels.json` beside it; True when both pass. With families, the link check
    reports the best family beside the best feature; with the studies and the run's
    interpretation config, the label check reports the planted truth's own held-out score
    (`truth_ba`, models.demo.ceiling)."""
    full = {modality: store.read_table(ref) for modality, ref in cohorts.items()}
    exposed = {modality: c[c["role"] == "exposed"] for modality, c in full.items()}
    doc = json.loads(truth.read_text())
    fams = {m: store.read_table(r) for m, r in (families or {}).items()}
    table = demo_check(doc, exposed, store.read_table(assoc), families=fams)
    dest.write_text(json.dumps(table.to_dict(orient="records"), indent=2, default=str))
    if interpretations is None:
        return check_passed(table)
    interp = {m: store.read_table(ref) for m, ref in interpretations.items()}
    ceiling = None
    if studies is not None and interpretation is not None:
        docs = make_docs(report_texts(store, studies), study_subjects(store, studies))
        cfg = interpretation

        def ceiling(finding: str, modality: str, unit: str, fid: int) -> float | None:
            return truth_ba(full[modality], unit, fid, docs, cfg, doc["findings"][finding]["study_ids"])

    labels = label_check(doc, exposed, interp, FINDING_NAMES, families=fams, ceiling=ceiling)
    (dest.parent / LABELS_FILE).write_text(json.dumps(labels.to_dict(orient="records"), indent=2, default=str))
    return check_passed(table) and labels_passed(labels)


def labels_passed(labels: pd.DataFrame) -> bool:
    """Every planted finding named, with a baseline near chance, in at least one modality
    (the image modality's best feature may match a finding's image poorly)."""
    return bool(len(labels)) and bool(labels.groupby("finding")["passed"].any().all())


@task(name="generate-demo-cohort", cache_policy=NONE)
def generate(out_dir: str, n_patients: int, seed: int) -> str:
    return str(generate_fn(Path(out_dir), DemoCohortConfig(n_patients=n_patients, seed=seed)))


@task(name="check-demo", cache_policy=NONE)
def check(store_root: str, truth: str, assoc: ArtifactRef, cohorts: dict[str, ArtifactRef], dest: str,
          interpretations: dict[str, ArtifactRef] | None = None,
          families: dict[str, ArtifactRef] | None = None, studies: ArtifactRef | None = None,
          config_path: str | None = None) -> bool:
    interpretation = load_run_config(config_path).interpretation if config_path else None
    return check_fn(ArtifactStore(store_root), Path(truth), assoc, cohorts, Path(dest), interpretations, families,
                    studies, interpretation)
