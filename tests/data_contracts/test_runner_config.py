"""Runner config and typed run overrides: cross-field checks at construction."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from data_contracts.overrides import RunOverrides, load_config
from data_contracts.runner_config import RunnerConfig
from tests.conftest import write_tiny_config


def test_runner_checks() -> None:
    assert RunnerConfig().kind == "local"
    with pytest.raises(ValidationError, match=r"set runner\.kind to 'dask'"):
        RunnerConfig(address="tcp://x:8786")
    with pytest.raises(ValidationError, match="local_gpus"):
        RunnerConfig(kind="dask", address="tcp://x:8786", local_gpus=1)
    with pytest.raises(ValidationError, match=r"exceeds runner\.n_workers"):
        RunnerConfig(kind="dask", n_workers=1, local_gpus=2)
    with pytest.raises(ValidationError):
        RunnerConfig(kind="dask", gpu_stages=("report",))  # type: ignore[arg-type]


def test_overrides_apply_and_revalidate(tiny_cohort: Path, tmp_path: Path) -> None:
    config = write_tiny_config(tiny_cohort, tmp_path)
    base = load_config(config)
    ov = RunOverrides(store="s3://bucket/prefix/", runner=RunnerConfig(kind="dask", address="tcp://h:8786"),
                      modalities=("report",), sae_epochs=2)
    cfg = load_config(config, ov)
    assert cfg.store == "s3://bucket/prefix" and cfg.runner.address == "tcp://h:8786"
    assert [m.modality for m in cfg.modalities] == ["report"] and cfg.sae.epochs == 2
    assert cfg.inputs == base.inputs and cfg.report_dir == base.report_dir
    assert load_config(config, RunOverrides()) == base
    with pytest.raises(ValueError, match="absolute path or a URL"):
        load_config(config, RunOverrides(store="relative/store"))
    with pytest.raises(ValueError, match=r"\['image'\] are not in the run config"):
        RunOverrides(modalities=("image",)).apply(cfg)
    with pytest.raises(ValidationError, match="sae_epochs"):
        RunOverrides.model_validate({"sae_epochs": 0})
    with pytest.raises(ValidationError, match="extra"):
        RunOverrides.model_validate({"store_url": "s3://b"})


def test_store_url_stays_a_url(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("store: s3://b/p\ninputs: {studies: a, events: b, outcomes: c}\n"
                   "modalities: [{modality: report, encoder: {name: minilm}}]\n")
    loaded = load_config(cfg)
    assert loaded.store == "s3://b/p" and loaded.report_dir == "s3://b/p/report"
    assert loaded.inputs.studies == tmp_path / "a"
