"""Shared fixtures: offline model hub, a tiny generated cohort and its run config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.demo.cohort import DemoCohortConfig, generate_demo_cohort

    out = tmp_path_factory.mktemp("tiny_cohort")
    generate_demo_cohort(out, DemoCohortConfig(n_patients=60, volume_shape=(24, 24, 16), seed=7))
    return out


def write_tiny_config(cohort: Path, out: Path) -> Path:
    """A run config over the tiny cohort with a small, fast SAE."""
    from data_contracts.config import (
        CohortConfig,
        InputsConfig,
        InterpretConfig,
        SAEConfig,
        SAESweepConfig,
        dump_run_config,
    )
    from tasks.demo import demo_run_config

    inputs = InputsConfig(studies=cohort / "studies.parquet", events=cohort / "events.parquet",
                          outcomes=cohort / "outcomes.yaml")
    cfg = demo_run_config(out, inputs).model_copy(update={
        "sae": SAEConfig(n_features=16, k=4, epochs=5),
        "sae_sweep": SAESweepConfig(variants=("matryoshka_topk", "topk"), n_features=(16,), k=(4,)),
        "cohort": CohortConfig(min_cohort_size=3),
        "interpretation": InterpretConfig(n_top=10, n_control=20),
    })
    path = out / "run.yaml"
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(cfg, path)
    return path
