"""Shared fixtures: offline model hub, a tiny generated cohort and its run config."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API (moto's server mode) on loopback for the whole session, with the
    standard AWS variables pointing at it and a bucket `medconcepts`; returns its URL.
    Subprocesses (workers, writers) inherit the variables."""
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": url, "MEDCONCEPTS_CACHE_DIR": str(tmp_path_factory.mktemp("object_cache"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("medconcepts")
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
