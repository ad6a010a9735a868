"""Typed overrides of a run config: what a deployment, a schedule or a single flow run may
change without editing the YAML (Prefect shows them as the flow's parameter schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_contracts.config import RunConfig, _pydantic_error, load_run_config
from data_contracts.runner_config import RunnerConfig
from data_contracts.storage import is_url


class RunOverrides(BaseModel):
    """Each field left None keeps the config's value (an overridden store does not move
    the report: set report_dir too). Locations must be absolute paths or URLs (a
    deployment's runs start wherever its worker runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = None
    report_dir: str | None = None
    runner: RunnerConfig | None = None
    modalities: tuple[Literal["report", "image"], ...] | None = Field(None, min_length=1)
    sae_epochs: int | None = Field(None, ge=1)

    def apply(self, cfg: RunConfig, source: str | Path = "<overrides>") -> RunConfig:
        """A new, re-validated RunConfig with these overrides applied."""
        raw: dict[str, Any] = cfg.model_dump()
        for field in ("store", "report_dir"):
            value = getattr(self, field)
            if value is not None:
                if not is_url(value) and not Path(value).is_absolute():
                    raise ValueError(f"overrides.{field} '{value}' must be an absolute path or a URL")
                raw[field] = value
        if self.runner is not None:
            raw["runner"] = self.runner.model_dump()
        if self.modalities is not None:
            known = {m["modality"] for m in raw["modalities"]}
            missing = sorted(set(self.modalities) - known)
            if missing:
                raise ValueError(f"overrides.modalities {missing} are not in the run config (has {sorted(known)})")
            raw["modalities"] = [m for m in raw["modalities"] if m["modality"] in self.modalities]
        if self.sae_epochs is not None:
            raw["sae"] = {**raw["sae"], "epochs": self.sae_epochs}
        try:
            return RunConfig.model_validate(raw)
        except ValidationError as e:
            raise _pydantic_error(Path(str(source)), e) from e


def load_config(path: str | Path, overrides: RunOverrides | None = None) -> RunConfig:
    """`load_run_config` plus overrides (None: the file as it is)."""
    cfg = load_run_config(path)
    return overrides.apply(cfg, path) if overrides is not None else cfg
