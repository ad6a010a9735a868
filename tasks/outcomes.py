"""Outcome stages: outcome labels per study x outcome from MEDS events, and the study_split
artifact (each labelled study's split and, per modality, whether it was encoded): the one
source association and survival read their analysis population from."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig, OutcomeSettings, load_outcome_definitions
from data_contracts.schemas import OUTCOME_LABELS, STUDY_SPLIT
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.outcomes.labels import iter_outcome_labels
from models.outcomes.population import Population, population_arrays, study_population
from models.stats.association import OutcomeMatrices, matrices_from_parts
from tasks.stage import run_stage


def outcomes_fn(
    store: ArtifactStore, studies: ArtifactRef, events: ArtifactRef, outcomes_path: Path, settings: OutcomeSettings
) -> ArtifactRef:
    defs = load_outcome_definitions(outcomes_path)
    params = {"outcomes": defs.model_dump(mode="json"), "settings": settings.model_dump(mode="json")}

    def build(w: ArtifactWriter) -> None:
        st = store.read_table(studies, columns=["study_id", "subject_id", "study_time"])
        # Codes as categories: ~10 M events share a few thousand distinct codes.
        ev = pq.read_table(data_path(store, events), read_dictionary=["code"]).to_pandas()
        with w.table_writer("data", OUTCOME_LABELS) as write:  # a few outcomes at a time
            for frame in coalesce(iter_outcome_labels(st, ev, defs, settings), ROW_GROUP):
                write(frame)

    return run_stage(store, "outcome_labels", OUTCOME_LABELS.key, [studies, events], params, build)


ROW_GROUP = 1 << 20  # label rows per parquet row group: few groups, each read at once


def coalesce(frames: Iterable[pd.DataFrame], min_rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive frames concatenated into frames of at least `min_rows` (the last may
    be smaller), in order."""
    buf: list[pd.DataFrame] = []
    n = 0
    for f in frames:
        buf.append(f)
        n += len(f)
        if n >= min_rows:
            yield pd.concat(buf, ignore_index=True)
            buf, n = [], 0
    if buf:
        yield pd.concat(buf, ignore_index=True)


@task(name="outcome-labels", cache_policy=NONE)
def label_outcomes(
    store_root: str, studies: ArtifactRef, events: ArtifactRef, outcomes_path: str, settings: OutcomeSettings
) -> ArtifactRef:
    return outcomes_fn(ArtifactStore(store_root), studies, events, Path(outcomes_path), settings)


LABEL_COLUMNS = ["study_id", "subject_id", "outcome_id", "eligible", "event"]


def study_split_fn(store: ArtifactStore, labels: ArtifactRef, embeddings: Mapping[str, ArtifactRef],
                   cfg: AssociationConfig) -> ArtifactRef:
    """Only the split settings of `cfg` are parameters: other association settings leave
    the artifact (and so survival) unchanged."""
    inputs = [labels, *(embeddings[m] for m in sorted(embeddings))]
    params = {"split_frac": cfg.split_frac, "split_seed": cfg.split_seed, "modalities": sorted(embeddings)}

    def build(w: ArtifactWriter) -> None:
        lab = label_population(store, labels)
        enc = {m: encoded_studies(store, r) for m, r in embeddings.items()}
        w.write_table("data", study_population(lab, enc, cfg.split_frac, cfg.split_seed), STUDY_SPLIT)

    return run_stage(store, "study_split", STUDY_SPLIT.key, inputs, params, build)


def encoded_studies(store: ArtifactStore, embeddings: ArtifactRef) -> np.ndarray:
    return store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()


def data_path(store: ArtifactStore, ref: ArtifactRef) -> Path:
    """The artifact's `data` table file, checksum verified."""
    return store.file_path(ref, store.manifest(ref)["tables"]["data"]["file"])


_CATEGORICAL = ("study_id", "outcome_id", "sex")
STUDY_COLUMNS = ["study_id", "subject_id", "outcome_id", "eligible", "event", "age_years", "sex"]


def label_batches(path: Path, columns: list[str], batch_rows: int = 1 << 20) -> Iterator[pd.DataFrame]:
    """OUTCOME_LABELS rows in batches, ids and sex as categoricals: a study x outcome table
    of 60 M rows is never one frame, and its ids are never 60 M Python strings."""
    pf = pq.ParquetFile(path, read_dictionary=[c for c in _CATEGORICAL if c in columns])
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pandas()


def label_studies(path: Path, batch_rows: int = 1 << 20) -> tuple[pd.DataFrame, list[str]]:
    """(each study's first row (STUDY_COLUMNS, ids as str), every outcome id).
    Labels hold each outcome's rows as one block in the same study order, so a block equal
    to the first outcome's ids brings no new study: compared in order (cheap), it skips the
    hash test. Any other rows get the full first-seen test, in Arrow on plain strings
    (decoding each row group's dictionary of every study cost O(batches x studies))."""
    pf = pq.ParquetFile(path, read_dictionary=["outcome_id", "sex"])
    firsts, outcomes, state = [], set[str](), _SeenStudies()
    for batch in pf.iter_batches(batch_size=batch_rows, columns=STUDY_COLUMNS):
        for start, n, outcome in _outcome_runs(batch.column("outcome_id")):
            outcomes.add(outcome)
            new = state.first_rows(batch.slice(start, n), outcome)
            if new is not None:
                firsts.append(new.to_pandas())
    if not firsts:
        return pd.DataFrame(columns=STUDY_COLUMNS), sorted(outcomes)
    studies = pd.concat(firsts, ignore_index=True)
    obj = {c: studies[c].astype(object) for c in ("study_id", "outcome_id", "sex")}
    return studies.assign(**obj), sorted(outcomes)


def _outcome_runs(col: pa.DictionaryArray) -> list[tuple[int, int, str]]:
    """(start, length, outcome) of each run of one outcome in a batch."""
    codes = col.indices.to_numpy(zero_copy_only=False)
    cuts = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    names = col.dictionary.to_pylist()
    return [(a, b - a, str(names[codes[a]])) for a, b in itertools.pairwise(cuts) if b > a]


class _SeenStudies:
    """The studies seen so far, and the first outcome's study ids in file order."""

    def __init__(self) -> None:
        self.seen = pa.array([], pa.string())
        self.first: str | None = None
        self.ref: list[pa.Array] = []
        self.read: dict[str, int] = {}  # rows of each outcome read so far

    def first_rows(self, rows: pa.RecordBatch, outcome: str) -> pa.RecordBatch | None:
        """The rows of studies not seen before (each study's first), None when none."""
        ids = rows.column("study_id").cast(pa.string())
        k = self.read.get(outcome, 0)
        self.read[outcome] = k + len(ids)
        self.first = outcome if self.first is None else self.first
        if outcome == self.first:
            self.ref.append(ids)
        elif self._same_as_reference(ids, k):
            return None
        unseen = pc.invert(pc.is_in(ids, value_set=self.seen))
        fresh, fresh_ids = rows.filter(unseen), ids.filter(unseen)
        if fresh.num_rows == 0:
            return None
        new_ids = pc.unique(fresh_ids)
        self.seen = pa.concat_arrays([self.seen, new_ids])
        return fresh.take(pc.index_in(new_ids, value_set=fresh_ids))

    def _same_as_reference(self, ids: pa.Array, k: int) -> bool:
        ref = pa.chunked_array(self.ref, pa.string())
        if k + len(ids) > len(ref):
            return False
        same = pc.equal(ref.slice(k, len(ids)), ids)
        return bool(pc.all(same).as_py()) and same.null_count == 0


def read_outcome_matrices(store: ArtifactStore, ref: ArtifactRef) -> OutcomeMatrices:
    """`outcome_matrices` of an outcome_labels artifact, read in batches."""
    path = data_path(store, ref)
    studies, outcomes = label_studies(path)
    columns = ["study_id", "outcome_id", "event", "eligible", "time_days"]
    present = pq.ParquetFile(path).schema_arrow.names
    columns += [c for c in ("competing_event", "complete_followup") if c in present]  # older labels lack them
    parts = label_batches(path, columns)
    return matrices_from_parts(studies, outcomes, parts)


def label_population(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    """The label rows `study_population` depends on (LABEL_COLUMNS): the eligible cases
    (the split's strata) and each study's first row (its patient); its result from these
    equals its result from every row."""
    path = data_path(store, ref)
    hits = pq.read_table(path, columns=LABEL_COLUMNS, filters=[("eligible", "=", True), ("event", "=", True)])
    return pd.concat([hits.to_pandas(), label_studies(path)[0][LABEL_COLUMNS]], ignore_index=True)


def outcome_counts(store: ArtifactStore, ref: ArtifactRef, binary_controls: str = "all") -> pd.DataFrame:
    """Per outcome (index outcome_id): eligible studies, cases, and the eligible event-free
    studies the binary analyses leave out for short follow-up (none under 'all')."""
    cols = ["n_eligible", "n_cases", "n_excluded_followup"]
    short_rule = binary_controls == "complete_followup"
    counts = []
    for b in label_batches(data_path(store, ref), ["outcome_id", "eligible", "event", "complete_followup"]):
        e = b[b["eligible"].to_numpy(bool)]
        event = e["event"].to_numpy(bool)
        short = ~event & ~e["complete_followup"].eq(True).to_numpy(bool) if short_rule else np.zeros(len(e), bool)
        part = pd.DataFrame({"outcome_id": e["outcome_id"], "n_eligible": 1, "n_cases": event.astype(np.int64),
                             "n_excluded_followup": short.astype(np.int64)})
        counts.append(part.groupby("outcome_id", observed=True)[cols].sum())
    if not counts:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in cols})
    total = pd.concat(counts).groupby(level=0, observed=True).sum()
    total.index = pd.Index(total.index.astype(str), name="outcome_id")
    return total.astype(np.int64)


def read_population(store: ArtifactStore, ref: ArtifactRef, om: OutcomeMatrices,
                    modalities: list[str]) -> Population:
    """The study_split artifact aligned with om.study_ids, checked."""
    return population_arrays(store.read_table(ref), om.study_ids, om.subject_ids, modalities, table_source(ref))


def table_source(ref: ArtifactRef) -> str:
    """How errors name the artifact's table file."""
    return f"{ref.url}/data.parquet"


@task(name="study_split", cache_policy=NONE)
def study_split(store_root: str, labels: ArtifactRef, embeddings: dict[str, ArtifactRef],
                cfg: AssociationConfig) -> ArtifactRef:
    return study_split_fn(ArtifactStore(store_root), labels, embeddings, cfg)
