"""`medconcepts backfill --dry-run` without a server: which months still have studies to
embed, per modality. Reads the inputs and the cache; writes nothing."""

from __future__ import annotations

from pathlib import Path

from data_contracts.overrides import RunOverrides, load_config
from data_contracts.store import ArtifactStore
from data_contracts.validate import check_image_paths, check_studies, read_table_file
from tasks.encoders import pending_counts


def pending_months(config_path: str, since: str | None, until: str | None, modality: str | None,
                   overrides: RunOverrides | None = None) -> dict[str, dict[str, int]]:
    """{modality: {month: studies to embed}} for months in [since, until]."""
    cfg = load_config(config_path, overrides)
    path = Path(cfg.inputs.studies)
    # the studies as ingest keeps them (escaping image paths cleared); relative paths and
    # content keys resolve against the studies file's folder, as at embedding
    studies, _ = check_image_paths(check_studies(read_table_file(path), str(path)), path.parent, str(path))
    store = ArtifactStore(cfg.store)
    return {m.modality: pending_counts(store, studies, m, since, until, str(path.parent))
            for m in cfg.modalities if modality in (None, m.modality)}
