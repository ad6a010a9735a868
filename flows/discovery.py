"""The discovery flow: wiring only. Every step is a task that reads artifacts, calls a
pure function in `models/`, writes one artifact and returns its reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prefect import flow, unmapped
from prefect.runtime import flow_run

from data_contracts.config import RunConfig
from data_contracts.overrides import RunOverrides, load_config
from data_contracts.store import ArtifactRef
from flows.embedding import embed_modality
from flows.runner import api_for_workers, gpu_slot, stage_needs_gpu, task_runner
from tasks.cohorts import cohorts
from tasks.families import families
from tasks.ingest import ingest_events, ingest_studies
from tasks.interpret import interpret
from tasks.lineage import record_run
from tasks.outcomes import label_outcomes, study_split
from tasks.report import ReportModality, publish, render
from tasks.sae import activations, publish_sae, published_sae, select, trainer_for
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


SAEPolicy = Literal["train", "reuse"]


@flow(name="medconcepts-discovery")
def discovery(config_path: str, sae_policy: SAEPolicy = "train", overrides: RunOverrides | None = None) -> RunResult:
    """Ingest -> embed -> SAE -> activations -> families -> cohorts (features and
    families) -> outcomes -> associations -> interpretations -> HTML report, for every
    modality in the run config.

    Embedding is incremental (only studies without a cached vector are encoded).
    `sae_policy`: 'train' trains the SAE sweep and publishes the selected SAE; 'reuse'
    encodes with the published SAE (trained on the same encoder), training one only when
    there is none. `overrides` change the config for this run (store, runner, ...). With
    `runner.kind: dask` the stages run as a subflow on a DaskTaskRunner."""
    cfg = load_config(config_path, overrides)
    runner = task_runner(cfg.runner)
    if runner is None:
        return _discover(cfg, config_path, sae_policy)
    with api_for_workers():
        return discovery_stages.with_options(task_runner=runner)(config_path, sae_policy, overrides)


@flow(name="medconcepts-discovery-stages")
def discovery_stages(config_path: str, sae_policy: SAEPolicy = "train",
                     overrides: RunOverrides | None = None) -> RunResult:
    """The discovery stages on the task runner the caller chose (Dask)."""
    return _discover(load_config(config_path, overrides), config_path, sae_policy)


def _sae(cfg: RunConfig, root: str, emb: ArtifactRef, modality: str, sae_policy: SAEPolicy
         ) -> tuple[ArtifactRef, ArtifactRef | None]:
    """(SAE used downstream, sweep artifact or None when the published SAE was reused)."""
    if sae_policy == "reuse":
        prior = published_sae(root, modality, emb)
        if prior is not None:
            return prior, None
    runs = cfg.sae_runs()
    with gpu_slot(stage_needs_gpu(cfg, "sae")):
        trained = trainer_for(runs).map(root, unmapped(emb), list(runs))
    sae, sweep = select(root, emb, trained, cfg.sae)
    publish_sae(root, modality, emb, sae, sweep)
    return sae, sweep


def _discover(cfg: RunConfig, config_path: str, sae_policy: SAEPolicy) -> RunResult:
    root = str(cfg.store)
    studies = ingest_studies(root, str(cfg.inputs.studies))
    events = ingest_events(root, str(cfg.inputs.events), cfg.outcome_settings)
    labels = label_outcomes(root, studies, events, str(cfg.inputs.outcomes), cfg.outcome_settings)
    mods: dict[str, ModalityRefs] = {}
    for m in cfg.modalities:
        emb = embed_modality(root, studies, m, str(cfg.inputs.studies.parent), stage_needs_gpu(cfg, "embed", m))
        sae, sweep = _sae(cfg, root, emb, m.modality, sae_policy)
        with gpu_slot(stage_needs_gpu(cfg, "sae")):
            act = activations.submit(root, emb, sae).result()
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
        {k: ReportModality(r.feature_stats, r.cohorts, r.interpretations, r.activations, r.families)
         for k, r in mods.items()},
        str(cfg.inputs.outcomes), cfg.report, cfg.name, surv,
    )
    index = publish(root, report, str(cfg.report_dir))
    produced = artifact_refs([studies, events, labels, split, assoc, surv, report], mods)
    run_id = str(flow_run.get_id() or "local")
    record = record_run(root, run_id, produced, {"config": str(config_path), "name": cfg.name})
    return RunResult(root, record, index, studies, events, labels, split, assoc, surv, report, mods)
