"""`medconcepts validate`: check a run config and its inputs without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_contracts.config import load_outcome_definitions, load_run_config
from data_contracts.validate import (
    check_events,
    check_image_paths,
    check_input_files,
    check_studies,
    read_table_file,
    resolve_image_paths,
)


def validate_run(config: Path) -> dict[str, Any]:
    """Raise `ContractError` (a ValueError naming file, row, column) on the first fatal
    problem; otherwise return counts, including rows that would be quarantined."""
    cfg = load_run_config(config)
    check_input_files(cfg, config)
    outcomes = load_outcome_definitions(cfg.inputs.outcomes)
    studies = check_studies(read_table_file(cfg.inputs.studies), str(cfg.inputs.studies))
    events = check_events(read_table_file(cfg.inputs.events), str(cfg.inputs.events),
                          cfg.outcome_settings.birth_code, cfg.outcome_settings.death_code)
    base = Path(cfg.inputs.studies).parent
    data, outside = check_image_paths(studies, base, str(cfg.inputs.studies))
    images = resolve_image_paths(data, base)["image_path"].dropna()
    missing_images = int((~images.map(lambda p: Path(p).exists())).sum())
    return {
        "config": str(config),
        "store": str(cfg.store),
        "modalities": {m.modality: m.encoder.name for m in cfg.modalities},
        "outcomes": [o.id for o in outcomes.outcomes],
        "studies": {"usable": len(studies.data), "quarantined": len(studies.quarantine) + len(outside),
                    "image_paths_missing": missing_images,
                    "empty_reports": int(studies.data["report_text"].fillna("").str.strip().eq("").sum())},
        "events": {"usable": len(events.data), "quarantined": len(events.quarantine)},
        "quarantine_reasons": sorted(set(studies.quarantine["reason"]) | set(outside["reason"])
                                     | set(events.quarantine["reason"])),
    }
