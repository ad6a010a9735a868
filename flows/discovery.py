"""The discovery flow: wiring only. Every step is a task that reads artifacts, calls a
pure function in `models/`, writes one artifact and returns its reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prefect import flow, unmapped
from prefect.runtime import flow_run

from data_contracts.config import load_run_config
from data_contracts.store import ArtifactRef
from flows.embedding import embed_modality
from tasks.cohorts import cohorts
from tasks.families import families
from tasks.ingest import ingest_events, ingest_studies
from tasks.interpret import interpret
from tasks.lineage import record_run
from tasks.outcomes import label_outcomes, study_split
from tasks.report import publish, render
from tasks.sae import activations, select, trainer_for
from tasks.stats import associate, survival


@dataclass(frozen=True)
class ModalityRefs:
    embeddings: ArtifactRef
    sae: ArtifactRef  # the sweep's selected SAE
    activations: ArtifactRef
    families: ArtifactRef
    feature_stats: ArtifactRef
    cohorts: ArtifactRef
    interpretations: ArtifactRef
    sae_sweep: ArtifactRef | None = None  # every sweep run, with the selection marked


def artifact_refs(core: Sequence[ArtifactRef], modalities: Mapping[str, ModalityRefs]) -> list[ArtifactRef]:
    """Every artifact of a run, shared stages first, then each modality's."""
    return [*core, *(ref for r in modalities.values() for ref in vars(r).values() if ref is not None)]


@dataclass(frozen=True)
class RunResult:
    """References only: what a caller (CLI, demo check) needs to find the artifacts."""

    store: str
    run_record: str
    report_index: str
    studies: ArtifactRef
    events: ArtifactRef
    outcome_labels: ArtifactRef
    study_split: ArtifactRef  # split and encoded studies: association's and survival's population
    associations: ArtifactRef
    survival: ArtifactRef
    report: ArtifactRef
    modalities: dict[str, ModalityRefs] = field(default_factory=dict)

    def artifacts(self) -> list[ArtifactRef]:
        core = [self.studies, self.events, self.outcome_labels, self.study_split, self.associations, self.survival,
                self.report]
        return artifact_refs(core, self.modalities)


@flow(name="medconcepts-discovery")
def discovery(config_path: str) -> RunResult:
    """Ingest -> embed -> SAE -> activations -> families -> cohorts (features and
    families) -> outcomes -> associations -> interpretations -> HTML report, for every
    modality in the run config."""
    cfg = load_run_config(config_path)
    root = str(cfg.store)
    studies = ingest_studies(root, str(cfg.inputs.studies))
    events = ingest_events(root, str(cfg.inputs.events))
    labels = label_outcomes(root, studies, events, str(cfg.inputs.outcomes), cfg.outcome_settings)
    mods: dict[str, ModalityRefs] = {}
    for m in cfg.modalities:
        emb = embed_modality(root, studies, m)
        runs = cfg.sae_runs()
        sae, sweep = select(root, emb, trainer_for(runs).map(root, unmapped(emb), list(runs)), cfg.sae)
        act = activations(root, emb, sae)
        fam = families(root, emb, sae, act, cfg.families)
        stats, coh = cohorts(root, emb, sae, act, fam, cfg.cohort)
        interp = interpret(root, studies, coh, m.modality, cfg.interpretation)
        mods[m.modality] = ModalityRefs(emb, sae, act, fam, stats, coh, interp, sweep)
    split = study_split(root, labels, {k: r.embeddings for k, r in mods.items()}, cfg.association)
    assoc = associate(
        root, {k: (r.feature_stats, r.cohorts) for k, r in mods.items()}, labels, split, cfg.association,
        {k: (r.activations, r.families) for k, r in mods.items()},
    )
    surv = survival(root, labels, assoc, split, {k: r.cohorts for k, r in mods.items()},
                    str(cfg.inputs.outcomes), cfg.survival)
    report = render(
        root, studies, labels, assoc,
        {k: (r.feature_stats, r.cohorts, r.interpretations, r.families) for k, r in mods.items()},
        str(cfg.inputs.outcomes), cfg.report, cfg.name, surv,
    )
    index = publish(root, report, str(cfg.report_dir))
    produced = artifact_refs([studies, events, labels, split, assoc, surv, report], mods)
    run_id = str(flow_run.get_id() or "local")
    record = record_run(root, run_id, produced, {"config": str(config_path), "name": cfg.name})
    return RunResult(root, record, index, studies, events, labels, split, assoc, surv, report, mods)
