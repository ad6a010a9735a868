"""Pyarrow schemas of every input table and artifact table, with their contract versions.

A contract is a named, versioned schema. Artifacts record the contract they were written
under; bumping a contract's version changes every artifact version derived from it, so a
schema change never silently reuses stale files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us")


@dataclass(frozen=True)
class Contract:
    """A named, versioned table schema.

    `required` columns must be present; the other schema columns are optional on input
    and filled with nulls when missing.
    """

    name: str
    version: str
    schema: pa.Schema
    required: tuple[str, ...]
    unique: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


# ---------------------------------------------------------------- inputs
STUDIES = Contract(
    name="studies",
    version="1",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("subject_id", pa.int64(), nullable=False),
            pa.field("study_time", TS, nullable=False),
            pa.field("image_path", pa.string()),
            pa.field("report_text", pa.string()),
        ]
    ),
    required=("study_id", "subject_id", "study_time"),
    unique=("study_id",),
)

MEDS_EVENTS = Contract(
    name="meds_events",
    version="1",
    schema=pa.schema(
        [
            pa.field("subject_id", pa.int64(), nullable=False),
            pa.field("time", TS),  # MEDS allows null time for static codes
            pa.field("code", pa.string(), nullable=False),
            pa.field("numeric_value", pa.float64()),
        ]
    ),
    required=("subject_id", "time", "code"),
)

QUARANTINE = Contract(
    name="quarantine",
    version="1",
    schema=pa.schema(
        [
            pa.field("source", pa.string(), nullable=False),  # file or stage that rejected it
            pa.field("row", pa.int64()),  # 0-based row in the source file, when known
            pa.field("study_id", pa.string()),
            pa.field("column", pa.string()),
            pa.field("reason", pa.string(), nullable=False),
        ]
    ),
    required=("source", "reason"),
)

# ---------------------------------------------------------------- artifacts
# What a row of cohorts, statistics, associations, survival and interpretations is about:
# one SAE feature, or one feature family (models/families). A family's id is its parent
# feature's id, so (unit, feature_id) names a unit and "family of #119" reads as such.
UNITS = ("feature", "family")
UNIT = pa.field("unit", pa.string(), nullable=False)

EMBEDDINGS = Contract(
    name="embeddings",
    version="1",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32()), nullable=False),
        ]
    ),
    required=("study_id", "embedding"),
    unique=("study_id",),
)

# One atomically committed batch of the incremental embedding cache (see
# data_contracts/embedding_cache.py): a vector, or the reason the study could not be embedded.
EMBEDDING_BATCH = Contract(
    name="embedding_batch",
    version="2",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32())),  # null when `error` is set
            pa.field("error", pa.string()),
            pa.field("item_sha256", pa.string()),  # checksum of the text / image embedded
        ]
    ),
    required=("study_id",),
    unique=("study_id",),
)

SAE_METRICS = Contract(
    name="sae_metrics",
    version="1",
    schema=pa.schema(
        [
            pa.field("split", pa.string(), nullable=False),  # train | heldout
            pa.field("metric", pa.string(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
        ]
    ),
    required=("split", "metric", "value"),
)

_F64 = pa.float64()
SAE_SWEEP = Contract(
    name="sae_sweep",
    version="2",
    schema=pa.schema(
        [
            pa.field("run", pa.string(), nullable=False),  # version of the run's sae artifact
            pa.field("variant", pa.string(), nullable=False),
            pa.field("n_features", pa.int64(), nullable=False),
            pa.field("k", pa.int64(), nullable=False),
            pa.field("prefixes", pa.list_(pa.int64())),  # Matryoshka nesting; [N] otherwise
            pa.field("selected", pa.bool_(), nullable=False),  # the SAE used downstream
            *(pa.field(f"{s}_{m}", _F64) for s in ("heldout", "train") for m in ("fvu", "mse", "l0", "dead_frac")),
            pa.field("heldout_prefix_fvu", pa.list_(_F64)),  # per prefix, Matryoshka only
            pa.field("heldout_freq_hist", pa.list_(_F64)),  # latents per log10 firing-frequency bin, -7..0
            pa.field("steps", pa.int64()),
        ]
    ),
    required=("run", "variant", "n_features", "k", "selected"),
    unique=("run",),
)

ACTIVATIONS = Contract(
    name="activations",
    version="1",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("feature_id", pa.int32(), nullable=False),
            pa.field("value", pa.float32(), nullable=False),
        ]
    ),
    required=("study_id", "feature_id", "value"),
)

FEATURE_STATS = Contract(
    name="feature_stats",
    version="2",
    schema=pa.schema(
        [
            UNIT,
            pa.field("feature_id", pa.int32(), nullable=False),  # feature, or the family's parent feature
            pa.field("n_studies", pa.int64(), nullable=False),
            pa.field("n_active", pa.int64(), nullable=False),
            pa.field("frac_active", pa.float64(), nullable=False),
            pa.field("mean_active", pa.float64()),
            pa.field("max_value", pa.float64()),
            pa.field("threshold", pa.float64()),  # activation cut-off of the exposed cohort
            pa.field("cohort_size", pa.int64(), nullable=False),
            pa.field("testable", pa.bool_(), nullable=False),
            pa.field("flag", pa.string()),  # why not testable, e.g. "dead", "cohort<20"
            # the family a feature belongs to (null: in no family, a finding of its own);
            # a family row's own id. Associations rank families and features in no family.
            pa.field("family_id", pa.int32()),
        ]
    ),
    required=("unit", "feature_id", "n_active", "cohort_size", "testable"),
    unique=("unit", "feature_id"),
)

COHORTS = Contract(
    name="cohorts",
    version="2",
    schema=pa.schema(
        [
            UNIT,
            pa.field("feature_id", pa.int32(), nullable=False),
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),  # exposed | control
            pa.field("value", pa.float32(), nullable=False),
            pa.field("rank", pa.int32(), nullable=False),  # 1 = strongest within role
        ]
    ),
    required=("unit", "feature_id", "study_id", "role", "value", "rank"),
)

# Feature families (models/families): one row per family of >= 2 features. The parent is
# the family's broadest feature (earliest Matryoshka prefix, then most studies) and its
# id is the family id; members are listed parent first, with why each joined ("parent",
# "nested": fires mostly when the parent fires; "direction": decoder mostly the parent's),
# P(parent fires | member fires) and the decoder cosine to the parent.
FAMILIES = Contract(
    name="families",
    version="1",
    schema=pa.schema(
        [
            pa.field("family_id", pa.int32(), nullable=False),  # = parent_feature
            pa.field("parent_feature", pa.int32(), nullable=False),
            pa.field("n_members", pa.int32(), nullable=False),
            pa.field("members", pa.list_(pa.int32()), nullable=False),
            pa.field("member_link", pa.list_(pa.string()), nullable=False),
            pa.field("member_containment", pa.list_(pa.float64()), nullable=False),
            pa.field("member_cosine", pa.list_(pa.float64()), nullable=False),
            pa.field("n_active", pa.int64(), nullable=False),  # studies where any member fires
            # cohesion: P(parent | any member fires); mean over non-parent members of
            # P(parent | member) and of the decoder cosine to the parent
            pa.field("parent_coverage", pa.float64(), nullable=False),
            pa.field("mean_containment", pa.float64(), nullable=False),
            pa.field("mean_cosine", pa.float64(), nullable=False),
        ]
    ),
    required=("family_id", "parent_feature", "n_members", "members"),
    unique=("family_id",),
)

# A family's activation per study where it fires (the families artifact's second table):
# the length of the family's share of the reconstruction, || sum_j f_j d_j || over its
# members (or their sum / max, FamilyConfig.activation).
FAMILY_ACTIVATIONS = Contract(
    name="family_activations",
    version="1",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("family_id", pa.int32(), nullable=False),
            pa.field("value", pa.float32(), nullable=False),
        ]
    ),
    required=("study_id", "family_id", "value"),
)

OUTCOME_LABELS = Contract(
    name="outcome_labels",
    version="4",
    schema=pa.schema(
        [
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("subject_id", pa.int64(), nullable=False),
            pa.field("outcome_id", pa.string(), nullable=False),
            pa.field("index_time", TS, nullable=False),
            pa.field("prior", pa.bool_(), nullable=False),  # outcome recorded on/before index
            pa.field("eligible", pa.bool_(), nullable=False),  # used in this analysis
            pa.field("event", pa.bool_(), nullable=False),  # first record within the window
            pa.field("time_days", pa.float64()),  # to event or censoring, capped at window
            # status known for the whole window: event, followed to its end, or died in it
            pa.field("complete_followup", pa.bool_(), nullable=False),
            pa.field("competing_event", pa.bool_()),  # follow-up ended by death within the window
            pa.field("age_years", pa.float64()),
            pa.field("sex", pa.string()),  # F | M | null
            pa.field("flag", pa.string()),
        ]
    ),
    required=("study_id", "subject_id", "outcome_id", "eligible", "event"),
)

# Who is analysed (models/outcomes/population.py): per modality and labelled study, the patient's
# discovery/validation split and whether the modality encoded the study. Association and
# survival both read it, so they analyse the same studies in the same splits.
STUDY_SPLIT = Contract(
    name="study_split",
    version="1",
    schema=pa.schema(
        [
            pa.field("modality", pa.string(), nullable=False),
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("subject_id", pa.int64(), nullable=False),
            pa.field("split", pa.string(), nullable=False),  # discovery | validation
            pa.field("encoded", pa.bool_(), nullable=False),  # false: quarantined by this modality
        ]
    ),
    required=("modality", "study_id", "subject_id", "split", "encoded"),
)

# Key of one unit (feature or family) x outcome result in one split (discovery |
# validation, by patient): shared by the associations, survival and KM-curve tables so
# they join on it.
PAIR_KEY = (
    pa.field("modality", pa.string(), nullable=False),
    UNIT,
    pa.field("feature_id", pa.int32(), nullable=False),
    pa.field("outcome_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
)

ASSOCIATIONS = Contract(
    name="associations",
    version="5",
    schema=pa.schema(
        [
            *PAIR_KEY,
            pa.field("n_exposed", pa.int64(), nullable=False),
            pa.field("n_exposed_cases", pa.int64(), nullable=False),
            pa.field("n_unexposed", pa.int64(), nullable=False),
            pa.field("n_unexposed_cases", pa.int64(), nullable=False),
            pa.field("p_outcome_exposed", pa.float64()),
            pa.field("p_outcome_baseline", pa.float64()),  # over all eligible studies
            pa.field("odds_ratio", pa.float64()),  # crude; Haldane +0.5 only for zero cells
            pa.field("or_ci_low", pa.float64()),  # Woolf 95%
            pa.field("or_ci_high", pa.float64()),
            pa.field("p_value", pa.float64()),  # Fisher exact, two-sided
            pa.field("q_value", pa.float64()),  # BH over every Fisher test of the split
            pa.field("p_bonferroni", pa.float64()),
            pa.field("n_adjusted", pa.int64()),  # eligible studies with age and sex
            # event-free eligible studies left out of this 2x2 for follow-up shorter than the
            # window (association.binary_controls: complete_followup; 0 under 'all')
            pa.field("n_excluded_followup", pa.int64()),
            pa.field("n_exposed_excluded_followup", pa.int64()),  # of them, in the cohort
            pa.field("score_p", pa.float64()),  # age+sex adjusted score test
            pa.field("score_q", pa.float64()),  # BH over every score test of the split
            pa.field("score_log_or", pa.float64()),  # one-step estimate U/V
            pa.field("score_se", pa.float64()),
            # the one estimator of association.rank_estimator (null where it gave none):
            pa.field("adj_method", pa.string()),  # logistic | firth logistic | score one-step
            pa.field("adj_log_or", pa.float64()),
            pa.field("adj_odds_ratio", pa.float64()),  # outcome ~ cohort + age + sex
            pa.field("adj_or_ci_low", pa.float64()),  # 95%: Wald (logistic, score), profile (Firth)
            pa.field("adj_or_ci_high", pa.float64()),
            pa.field("adj_p_value", pa.float64()),  # Wald | penalised LR (Firth) | score
            pa.field("rank", pa.int32()),  # discovery only, within (modality, outcome)
            pa.field("n_ranked", pa.int32()),
            pa.field("n_tested", pa.int32()),
            # validation p of a ranked pair, Holm/BH over the pairs ranked for its (modality, outcome)
            pa.field("replication_p_adj", pa.float64()),
            pa.field("replicated", pa.bool_()),  # null for pairs not ranked in discovery
            pa.field("flag", pa.string()),
            # option or_per_sd: outcome ~ standardised activation + age + sex, exact-fit pairs
            pa.field("sd_odds_ratio", pa.float64()),  # OR per SD of the activation
            pa.field("sd_ci_low", pa.float64()),  # Wald 95%
            pa.field("sd_ci_high", pa.float64()),
            pa.field("sd_p_value", pa.float64()),
            pa.field("sd_flag", pa.string()),
        ]
    ),
    required=("modality", "unit", "feature_id", "outcome_id", "split", "n_exposed", "n_exposed_cases"),
)

ASSOCIATION_METHODS = Contract(
    name="association_methods",
    version="1",
    schema=pa.schema(
        [
            pa.field("topic", pa.string(), nullable=False),
            pa.field("statement", pa.string(), nullable=False),
        ]
    ),
    required=("topic", "statement"),
)

SURVIVAL = Contract(
    name="survival",
    version="2",
    schema=pa.schema(
        [
            *PAIR_KEY,
            pa.field("rank", pa.int32()),  # discovery rank of the pair
            pa.field("window_years", pa.float64(), nullable=False),
            pa.field("n", pa.int64(), nullable=False),
            pa.field("n_exposed", pa.int64(), nullable=False),
            pa.field("n_events", pa.int64(), nullable=False),
            pa.field("n_exposed_events", pa.int64(), nullable=False),
            pa.field("n_competing", pa.int64()),  # follow-up ended by death (competing event)
            pa.field("hazard_ratio", pa.float64()),  # cause-specific Cox (deaths censored), age+sex
            pa.field("hr_ci_low", pa.float64()),
            pa.field("hr_ci_high", pa.float64()),
            pa.field("hr_p", pa.float64()),
            pa.field("cuminc_exposed", pa.float64()),  # 1 - Kaplan-Meier S(window), deaths censored
            pa.field("cuminc_exposed_low", pa.float64()),
            pa.field("cuminc_exposed_high", pa.float64()),
            pa.field("cuminc_unexposed", pa.float64()),
            pa.field("cuminc_unexposed_low", pa.float64()),
            pa.field("cuminc_unexposed_high", pa.float64()),
            # Aalen-Johansen cumulative incidence at the window, death a competing event
            pa.field("aj_cuminc_exposed", pa.float64()),
            pa.field("aj_cuminc_unexposed", pa.float64()),
            pa.field("logrank_p", pa.float64()),
            pa.field("flag", pa.string()),
        ]
    ),
    required=("modality", "unit", "feature_id", "outcome_id", "split", "n"),
)

KM_CURVES = Contract(
    name="km_curves",
    version="2",
    schema=pa.schema(
        [
            *PAIR_KEY,
            pa.field("group", pa.string(), nullable=False),  # exposed | unexposed
            pa.field("time_days", pa.float64(), nullable=False),
            pa.field("cum_incidence", pa.float64(), nullable=False),  # 1 - KM
            pa.field("aj_cum_incidence", pa.float64()),  # Aalen-Johansen, death competing
            pa.field("ci_low", pa.float64()),
            pa.field("ci_high", pa.float64()),
            pa.field("n_at_risk", pa.int64(), nullable=False),  # durations >= time_days
            pa.field("year", pa.int32()),  # set on the yearly marks: the at-risk table
        ]
    ),
    required=("modality", "unit", "feature_id", "outcome_id", "split", "group", "time_days", "cum_incidence"),
)

INTERPRETATIONS = Contract(
    name="interpretations",
    version="2",
    schema=pa.schema(
        [
            pa.field("modality", pa.string(), nullable=False),
            UNIT,  # feature | family (what feature_id numbers)
            pa.field("feature_id", pa.int32(), nullable=False),
            pa.field("method", pa.string(), nullable=False),  # keywords | llm
            pa.field("judge", pa.string(), nullable=False),  # keywords | llm
            pa.field("named_from", pa.string(), nullable=False),  # whose text named it
            pa.field("label", pa.string(), nullable=False),
            pa.field("explanation", pa.string()),  # one sentence (llm)
            pa.field("top_terms", pa.list_(pa.string()), nullable=False),
            pa.field("term_scores", pa.list_(pa.float64()), nullable=False),
            pa.field("n_candidates", pa.int64(), nullable=False),  # best-of-k
            pa.field("n_train_top", pa.int64(), nullable=False),
            pa.field("n_train_control", pa.int64(), nullable=False),
            pa.field("n_heldout_top", pa.int64(), nullable=False),
            pa.field("n_heldout_top_hits", pa.int64(), nullable=False),
            pa.field("n_heldout_control", pa.int64(), nullable=False),
            pa.field("n_heldout_control_hits", pa.int64(), nullable=False),
            pa.field("heldout_balanced_accuracy", pa.float64()),
            pa.field("ba_ci_low", pa.float64()),  # Wilson 95%
            pa.field("ba_ci_high", pa.float64()),
            pa.field("precision", pa.float64()),
            pa.field("recall", pa.float64()),
            pa.field("auroc", pa.float64()),  # only where the judge's scores are graded
            pa.field("decile_recall", pa.list_(pa.float64()), nullable=False),  # top decile first; NaN: empty
            pa.field("baseline_label", pa.string()),  # another feature's label (shuffled-label baseline)
            pa.field("baseline_balanced_accuracy", pa.float64()),
            pa.field("flag", pa.string()),
        ]
    ),
    required=("modality", "unit", "feature_id", "label"),
)

# ---------------------------------------------------------------- report tables
# Everything a report figure shows, computed in models/figures and stored in the report
# artifact beside the HTML: the page draws these numbers and nothing else.
# A page is about one unit (UNIT: a feature, or a feature family named by its parent
# feature's id); report tables written before families lack `unit` and mean features.
_FEATURE = (pa.field("modality", pa.string(), nullable=False), UNIT, pa.field("feature_id", pa.int32(), nullable=False))

REPORT_PAGES = Contract(
    name="report_pages",
    version="2",
    schema=pa.schema(
        [
            *_FEATURE,
            pa.field("priority", pa.int64(), nullable=False),  # 0 = first page written
            pa.field("best_rank", pa.float64()),  # best discovery rank over outcomes; null: listed only
            pa.field("n_ranked", pa.int64(), nullable=False),  # outcomes it ranks for
            pa.field("best_p", pa.float64()),
            pa.field("listed", pa.bool_(), nullable=False),  # named in report.pages
            pa.field("selected", pa.bool_(), nullable=False),  # within report.max_feature_pages
        ]
    ),
    required=("modality", "unit", "feature_id", "priority", "selected"),
)

ACTIVATION_HISTOGRAMS = Contract(
    name="activation_histograms",
    version="2",
    schema=pa.schema(
        [
            *_FEATURE,
            pa.field("bin", pa.int32(), nullable=False),  # 0: studies where it does not fire
            pa.field("lo", pa.float64(), nullable=False),
            pa.field("hi", pa.float64(), nullable=False),
            pa.field("n_studies", pa.int64(), nullable=False),
        ]
    ),
    required=("modality", "unit", "feature_id", "bin", "lo", "hi", "n_studies"),
)

MANHATTAN = Contract(
    name="manhattan",
    version="2",
    schema=pa.schema(
        [
            pa.field("modality", pa.string(), nullable=False),
            pa.field("unit", pa.string()),  # feature | family; null on band rows
            pa.field("feature_id", pa.int64()),  # null on band rows
            pa.field("outcome_id", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),  # point | band (pairs not drawn one by one)
            pa.field("neglog10_p", pa.float64(), nullable=False),  # -log10 score-test p; band: minimum
            pa.field("neglog10_p_max", pa.float64()),  # band: maximum
            pa.field("log_or", pa.float64()),  # adjusted log-OR (volcano x)
            pa.field("rank", pa.float64()),
            pa.field("n_pairs", pa.int64(), nullable=False),
        ]
    ),
    required=("modality", "outcome_id", "kind", "neglog10_p", "n_pairs"),
)

FDR_CUTS = Contract(
    name="fdr_cuts",
    version="1",
    schema=pa.schema(
        [
            pa.field("modality", pa.string(), nullable=False),
            pa.field("outcome_id", pa.string(), nullable=False),
            pa.field("p_cut", pa.float64()),  # largest score p with score q < alpha in its BH family; null: none
            pa.field("family", pa.string()),  # the BH family the q-values cut cleanly in (inferred)
            pa.field("n_pass", pa.int64(), nullable=False),
            pa.field("n_tests", pa.int64(), nullable=False),
        ]
    ),
    required=("modality", "outcome_id", "n_pass", "n_tests"),
)

FOREST = Contract(
    name="forest",
    version="2",
    schema=pa.schema(
        [
            *_FEATURE,
            pa.field("outcome_id", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("row", pa.int32(), nullable=False),  # plot row, 0 at the top
            pa.field("adj_odds_ratio", pa.float64()),
            pa.field("adj_or_ci_low", pa.float64()),
            pa.field("adj_or_ci_high", pa.float64()),
            pa.field("rank", pa.float64()),  # discovery rank
            pa.field("n_outcomes", pa.int64(), nullable=False),  # outcomes tested for the feature
            # on a family's page: the member feature this row is about, drawn under the
            # family's own row of the same outcome; null: the page's unit itself
            pa.field("member", pa.int32()),
        ]
    ),
    required=("modality", "unit", "feature_id", "outcome_id", "split", "row", "n_outcomes"),
)

THUMBNAILS = Contract(
    name="thumbnails",
    version="2",
    schema=pa.schema(
        [
            *_FEATURE,
            pa.field("role", pa.string(), nullable=False),  # exposed | control
            pa.field("rank", pa.int32(), nullable=False),
            pa.field("study_id", pa.string(), nullable=False),
            pa.field("view", pa.string(), nullable=False),  # axial | coronal
            pa.field("png", pa.binary()),  # null when the volume could not be read
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("error", pa.string()),
        ]
    ),
    required=("modality", "unit", "feature_id", "role", "rank", "study_id", "view"),
)

ALL_CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        STUDIES,
        MEDS_EVENTS,
        QUARANTINE,
        EMBEDDINGS,
        EMBEDDING_BATCH,
        SAE_METRICS,
        SAE_SWEEP,
        ACTIVATIONS,
        FEATURE_STATS,
        COHORTS,
        FAMILIES,
        FAMILY_ACTIVATIONS,
        OUTCOME_LABELS,
        STUDY_SPLIT,
        ASSOCIATIONS,
        ASSOCIATION_METHODS,
        SURVIVAL,
        KM_CURVES,
        INTERPRETATIONS,
        REPORT_PAGES,
        ACTIVATION_HISTOGRAMS,
        MANHATTAN,
        FDR_CUTS,
        FOREST,
        THUMBNAILS,
    )
}
