"""Feature families of the selected SAE and each family's activation per study."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import FamilyConfig
from data_contracts.schemas import FAMILIES, FAMILY_ACTIVATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.families.activation import family_activations
from models.families.rule import build_families, families_table
from models.sae.checkpoint import load_decoder
from tasks.stage import run_stage


def compute_families(activations: pd.DataFrame, study_ids: np.ndarray, decoder: np.ndarray,
                     prefixes: list[int], cfg: FamilyConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FAMILIES rows, FAMILY_ACTIVATIONS rows); none when families are off."""
    act = activations[activations["value"] > 0]
    study = pd.Index(study_ids).get_indexer(act["study_id"])
    if (study < 0).any():
        raise ValueError(f"{int((study < 0).sum())} activation rows name studies that were not encoded")
    feature = act["feature_id"].to_numpy(np.int64)
    if not cfg.enabled:
        study, feature = study[:0], feature[:0]
    tree = build_families(decoder, prefixes, study, feature, len(study_ids), cfg)
    table = families_table(tree, study, feature, cfg.min_members)
    members = {int(f): np.asarray(m, np.int64) for f, m in zip(table["family_id"], table["members"], strict=True)}
    return table, family_activations(act, members, decoder, cfg.activation)


def families_fn(store: ArtifactStore, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef,
                cfg: FamilyConfig) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        decoder, prefixes = load_decoder(store.local_dir(sae))
        ids = store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()
        table, acts = compute_families(store.read_table(activations), ids, decoder, prefixes, cfg)
        w.write_table("data", table, FAMILIES)
        w.write_table("activations", acts, FAMILY_ACTIVATIONS)

    return run_stage(store, "families", FAMILIES.key, [embeddings, sae, activations], {"families": cfg.model_dump()},
                     build)


@task(name="families", cache_policy=NONE)
def families(store_root: str, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef,
             cfg: FamilyConfig) -> ArtifactRef:
    return families_fn(ArtifactStore(store_root), embeddings, sae, activations, cfg)
