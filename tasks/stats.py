"""Association and survival stages: feature x outcome associations over every modality's
cohorts in both splits, then time-to-event confirmation of each outcome's top ranked pairs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig, SurvivalConfig, load_outcome_definitions
from data_contracts.errors import ContractError
from data_contracts.schemas import ASSOCIATION_METHODS, ASSOCIATIONS, KM_CURVES, SURVIVAL
from data_contracts.store import MANIFEST, ArtifactRef, ArtifactStore, ArtifactWriter
from models.outcomes.population import population_arrays
from models.stats.activation_sd import activation_matrix
from models.stats.association import OutcomeMatrices, associate_splits, exposure_matrix, outcome_matrices
from models.stats.methods import association_methods
from models.stats.survival import YEAR_DAYS, survival_hits, top_hits
from models.stats.units import from_columns, to_columns, unit_columns
from tasks.outcomes import data_path, read_outcome_matrices, read_population, table_source
from tasks.stage import run_stage


def associate_frame(
    feature_stats: Mapping[str, pd.DataFrame], cohorts: Mapping[str, pd.DataFrame],
    population: pd.DataFrame, labels: pd.DataFrame | OutcomeMatrices, cfg: AssociationConfig,
    activations: Mapping[str, pd.DataFrame] | None = None, source: str = "study_split",
) -> pd.DataFrame:
    """ASSOCIATIONS rows of every modality and unit (feature, family), sorted by split,
    modality, outcome and rank. population: STUDY_SPLIT rows (read from `source`); labels:
    OUTCOME_LABELS rows or their matrices; `activations` (study_id, unit, feature_id, value
    per modality: feature and family activations) only with cfg.or_per_sd."""
    om = labels if isinstance(labels, OutcomeMatrices) else outcome_matrices(labels)
    pop = population_arrays(population, om.study_ids, om.subject_ids, list(feature_stats), source)
    exposures, columns = {}, {}
    for modality, stats in feature_stats.items():
        # A study this modality could not encode (quarantined) is neither exposed nor a
        # control: it leaves this modality's analyses only.
        cols = columns[modality] = unit_columns(stats)
        coh = cohorts[modality]
        E = exposure_matrix(to_columns(coh[coh["role"] == "exposed"], cols), om.study_ids, len(cols))
        exposures[modality] = (E, cols["testable"].to_numpy(bool), pop.encoded[modality])
    acts = None if activations is None else {
        m: activation_matrix(to_columns(a, columns[m]), om.study_ids, len(columns[m])) for m, a in activations.items()}
    rankable = {m: c["rankable"].to_numpy(bool) for m, c in columns.items()}
    out = associate_splits(exposures, om, pop.split, cfg, acts, rankable)
    out = pd.concat([from_columns(g, columns[str(m)]) for m, g in out.groupby("modality", sort=True)],
                    ignore_index=True) if len(out) else out.assign(unit=pd.Series(dtype=object))
    return out.sort_values(["split", "modality", "outcome_id", "rank", "unit", "feature_id"],
                           na_position="last").reset_index(drop=True)


def unit_activations(activations: pd.DataFrame, family_acts: pd.DataFrame) -> pd.DataFrame:
    """ACTIVATIONS and FAMILY_ACTIVATIONS rows as one (study_id, unit, feature_id, value) frame."""
    fam = family_acts.rename(columns={"family_id": "feature_id"})
    return pd.concat([activations.assign(unit="feature"), fam.assign(unit="family")], ignore_index=True)


def associate_fn(
    store: ArtifactStore,
    cohorts: Mapping[str, tuple[ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    split: ArtifactRef,
    cfg: AssociationConfig,
    activations: Mapping[str, tuple[ArtifactRef, ArtifactRef]] | None = None,
) -> ArtifactRef:
    """cohorts: modality -> (feature_stats, cohorts); split: the study_split artifact
    (split and encoded studies). `activations` (per modality: the activations and the
    families artifact) are read only with cfg.or_per_sd, and then required."""
    if cfg.or_per_sd and (activations is None or set(activations) != set(cohorts)):
        raise ValueError("association.or_per_sd needs the activations and families artifacts of every modality")
    acts_in = dict(activations or {}) if cfg.or_per_sd else {}
    inputs = [labels, split] + [r for pair in cohorts.values() for r in pair]
    inputs += [r for m in sorted(acts_in) for r in acts_in[m]]
    params = {"association": cfg.model_dump(), "modalities": sorted(cohorts)}

    def build(w: ArtifactWriter) -> None:
        lab = read_outcome_matrices(store, labels)
        stats = {m: store.read_table(s) for m, (s, _) in cohorts.items()}
        coh = {m: exposed_rows(store, c) for m, (_, c) in cohorts.items()}
        pop = store.read_table(split)
        acts = {m: unit_activations(store.read_table(a), store.read_table(f, "activations"))
                for m, (a, f) in acts_in.items()} if acts_in else None
        frame = associate_frame(stats, coh, pop, lab, cfg, acts, table_source(split))
        w.write_table("data", frame, ASSOCIATIONS)
        w.write_table("methods", association_methods(cfg), ASSOCIATION_METHODS)

    return run_stage(store, "associations", ASSOCIATIONS.key, inputs, params, build)


@task(name="associate", cache_policy=NONE)
def associate(
    store_root: str,
    cohorts: dict[str, tuple[ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    split: ArtifactRef,
    cfg: AssociationConfig,
    activations: dict[str, tuple[ArtifactRef, ArtifactRef]] | None = None,
) -> ArtifactRef:
    return associate_fn(ArtifactStore(store_root), cohorts, labels, split, cfg, activations)


def survival_fn(
    store: ArtifactStore, labels: ArtifactRef, assoc: ArtifactRef, split: ArtifactRef,
    cohorts: Mapping[str, ArtifactRef], outcomes_path: Path, cfg: SurvivalConfig,
) -> ArtifactRef:
    """split: the study_split artifact the associations were computed from (checked), so
    both stages analyse the same studies in the same splits."""
    _check_same_split(store, assoc, split)
    defs = load_outcome_definitions(outcomes_path)
    windows = {o.id: o.window_years * YEAR_DAYS for o in defs.outcomes}
    params = {"survival": cfg.model_dump(), "windows": windows}

    def build(w: ArtifactWriter) -> None:
        ranked = pq.read_table(data_path(store, assoc),
                               columns=["modality", "unit", "feature_id", "outcome_id", "split", "rank"],
                               filters=[("split", "=", "discovery"), ("rank", "<=", cfg.top_per_outcome)])
        hits = top_hits(ranked.to_pandas(), cfg.top_per_outcome)
        om = read_outcome_matrices(store, labels)
        pop = read_population(store, split, om, sorted(cohorts))
        exposed = {m: _exposed_masks(store, ref, om.study_ids, hits[hits["modality"] == m])
                   for m, ref in cohorts.items()}
        summary, curves = survival_hits(hits, exposed, om, pop, windows, cfg.min_events)
        # No ranked pair means no rows: still a self-describing, empty table.
        summary = summary if len(summary) else pd.DataFrame(columns=SURVIVAL.schema.names)
        curves = curves if len(curves) else pd.DataFrame(columns=KM_CURVES.schema.names)
        w.write_table("data", summary, SURVIVAL)
        w.write_table("km_curves", curves, KM_CURVES)

    inputs = [labels, assoc, split, *cohorts.values()]
    return run_stage(store, "survival", SURVIVAL.key, inputs, params, build)


def _exposed_masks(store: ArtifactStore, ref: ArtifactRef, study_ids: np.ndarray,
                   hits: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """(unit, feature_id) -> exposed mask over study_ids, for every unit among the hits."""
    c = exposed_rows(store, ref)
    c = c[c["feature_id"].isin(hits["feature_id"].unique())]
    # Positions by hashing, once: np.isin on string (object) ids compares every study with
    # every exposed id (numpy's loop for object arrays), quadratic at hospital scale.
    pos = pd.Index(study_ids).get_indexer(c["study_id"].to_numpy(object))
    c = c.assign(_pos=pos)[pos >= 0]
    by_unit = {(str(u), int(f)): g["_pos"].to_numpy() for (u, f), g in c.groupby(["unit", "feature_id"])}
    masks = {}
    for key in {(str(u), int(f)) for u, f in zip(hits["unit"], hits["feature_id"], strict=True)}:
        mask = np.zeros(len(study_ids), bool)
        mask[by_unit.get(key, np.zeros(0, np.int64))] = True
        masks[key] = mask
    return masks


def exposed_rows(store: ArtifactStore, cohorts: ArtifactRef) -> pd.DataFrame:
    """The exposed rows of a cohorts artifact (unit, feature_id, study_id, role): the
    control samples are not read."""
    return pq.read_table(data_path(store, cohorts), columns=["unit", "feature_id", "study_id", "role"],
                         filters=[("role", "=", "exposed")]).to_pandas()


def _check_same_split(store: ArtifactStore, assoc: ArtifactRef, split: ArtifactRef) -> None:
    used = [i for i in store.manifest(assoc).get("inputs", []) if i.get("kind") == split.kind]
    if [(i.get("version"), i.get("digest")) for i in used] != [(split.version, split.digest)]:
        raise ContractError(f"{assoc.url}/{MANIFEST}", None, "inputs",
                            f"associations computed from study_split {[i.get('version') for i in used]}, "
                            f"survival given {split.version}",
                            "the study_split artifact the associations were computed from")


@task(name="survival", cache_policy=NONE)
def survival(
    store_root: str, labels: ArtifactRef, assoc: ArtifactRef, split: ArtifactRef, cohorts: dict[str, ArtifactRef],
    outcomes_path: str, cfg: SurvivalConfig,
) -> ArtifactRef:
    return survival_fn(ArtifactStore(store_root), labels, assoc, split, cohorts, Path(outcomes_path), cfg)
