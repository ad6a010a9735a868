from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_tiny_config


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect database + server for every flow test (~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def local_run(prefect_harness: None, tiny_cohort: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One discovery run of the tiny config on a local store with the default (thread)
    runner: the reference other runs (S3 store, Dask) are compared with."""
    from flows.discovery import discovery

    config = write_tiny_config(tiny_cohort, tmp_path_factory.mktemp("local") / "run")
    return config, discovery(str(config))
