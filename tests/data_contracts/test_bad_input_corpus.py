"""The bad-input corpus (tests/bad_inputs.py): each case gets its documented outcome at the
boundary, nothing is silently dropped and nothing half-written is left. The same defects
in one cohort, through the whole flow, are in tests/flows/test_dirty_run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data_contracts.checksums import ChecksumMemo
from data_contracts.config import (
    CTRadiomicsConfig,
    ModalityConfig,
    OutcomeSettings,
    load_outcome_definitions,
    load_run_config,
)
from data_contracts.errors import ContractError
from data_contracts.store import ArtifactStore
from data_contracts.validate import check_input_files, read_table_file
from tasks.encoders import embed_fn
from tasks.ingest import ingest_events_fn, ingest_studies_fn
from tasks.outcomes import outcomes_fn
from tests.bad_inputs import CASES, OUTCOMES_YAML, Base, Case

IMAGE = ModalityConfig(modality="image", encoder=CTRadiomicsConfig(grid=(2, 2, 1)))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    from models.demo.cohort import DemoCohortConfig, generate_demo_cohort

    root = tmp_path_factory.mktemp("corpus_base")
    generate_demo_cohort(root, DemoCohortConfig(n_patients=16, write_images=False, seed=3))
    (root / "outcomes.yaml").write_text(OUTCOMES_YAML)
    return Base(root, pd.read_parquet(root / "studies.parquet"), pd.read_parquet(root / "events.parquet"))


def test_corpus_covers_every_input() -> None:
    assert len(CASES) >= 35 and len({c.id for c in CASES}) == len(CASES)
    assert {c.target for c in CASES} == {"studies", "images", "events", "outcomes", "config"}


def _ingest(c: Case, store: ArtifactStore, path: Path, base: Base, memo: ChecksumMemo) -> dict[str, Any]:
    if c.target in ("studies", "images"):
        ref = ingest_studies_fn(store, path, memo)
        out = {"ref": ref, "n_input": len(read_table_file(path))}
        if c.target == "images":
            ref = embed_fn(store, ref, IMAGE, str(path.parent))
        return {**out, "ref": ref}
    ref = ingest_events_fn(store, path, OutcomeSettings(), memo)
    return {"ref": ref, "n_input": len(read_table_file(path))}


def _labels(store: ArtifactStore, base: Base, studies: Path, events: Path, outcomes: Path,
            memo: ChecksumMemo) -> pd.DataFrame:
    st = ingest_studies_fn(store, studies, memo)
    ev = ingest_events_fn(store, events, OutcomeSettings(), memo)
    return store.read_table(outcomes_fn(store, st, ev, outcomes, OutcomeSettings()))


def _check_error(c: Case, e: ContractError, path: Path, store: ArtifactStore) -> None:
    assert Path(e.file).name in (path.name, "run.yaml"), e
    assert (e.row, e.column) == (c.row, c.column), str(e)
    assert c.match in e.found and e.expected, str(e)
    arts = Path(store.root) / "artifacts"
    left = list(arts.rglob("*")) if arts.exists() else []
    assert not [p for p in left if p.name.startswith(".tmp") or p.name == "manifest.json"], left


def _check_quarantine(c: Case, store: ArtifactStore, got: dict[str, Any]) -> None:
    ref, n = got["ref"], got["n_input"]
    q, data = store.read_table(ref, "quarantine"), store.read_table(ref)
    row = n - 1 if c.row == -1 else c.row
    hit = q[(q["row"] == row) & q["reason"].str.contains(c.match, regex=False)]
    assert len(hit) == 1, q.to_dict("records")
    assert hit["column"].iloc[0] == c.column and hit["source"].iloc[0]
    if c.target == "images":  # one row per study: embedded or quarantined, never both or neither
        assert len(data) + len(q) == n and set(data["study_id"]).isdisjoint(q["study_id"])
    else:  # every input row is in the data or quarantined (the image-path rows are both)
        kept_anyway = q["reason"].str.contains("leaves the studies file's folder").sum()
        assert len(data) + q["row"].nunique() - kept_anyway == n, (len(data), q.to_dict("records"))


def _check_flag(c: Case, labels: pd.DataFrame, base: Base) -> None:
    if c.id == "outcomes-codes-match-nothing":
        assert not labels["event"].any() and len(labels) == len(base.studies)
        return
    sid = base.studies.at[c.row, "study_id"]
    rows = labels[labels["study_id"] == sid]
    if "without a date" in c.match:  # only the outcome the undated record is of
        rows = rows[rows["outcome_id"] == "heart_failure"]
    for part in c.match.split(";"):
        assert rows["flag"].fillna("").str.contains(part, regex=False).all(), rows[["outcome_id", "flag"]]
    if "without a date" in c.match:  # counted as prior
        assert bool(rows["prior"].iloc[0]) and not bool(rows["eligible"].iloc[0])
    if "end of the data" in c.match:
        assert not rows["eligible"].any()


def _accepted(c: Case, store: ArtifactStore, got: dict[str, Any], base: Base, path: Path) -> None:
    data = store.read_table(got["ref"])
    if c.id == "studies-extra-columns":
        assert store.manifest(got["ref"])["params"]["ignored_columns"] == ["mrn", "ward"]
        assert list(data.columns) == ["study_id", "subject_id", "study_time", "image_path", "report_text"]
    elif c.id == "studies-tz-aware-mixed-with-naive":
        assert data["study_time"].tolist() == [pd.Timestamp("2016-03-01 10:00"), pd.Timestamp("2016-03-02 10:00"),
                                               pd.Timestamp("2016-03-03 22:30")]
    elif c.id == "studies-bom-crlf-csv":
        clean = base.studies.drop(columns="image_path").iloc[:5].reset_index(drop=True)
        assert data["study_id"].tolist() == clean["study_id"].tolist()
        assert data["report_text"].tolist() == clean["report_text"].tolist()
        assert (data["study_time"] == clean["study_time"]).all()
    elif c.id in ("studies-2mb-report", "studies-html-js-in-text"):
        original = pd.read_parquet(path).at[1, "report_text"]
        assert data.at[1, "report_text"] == original
    elif c.id in ("meds-null-time-static-codes", "meds-duplicate-rows"):
        memo = ChecksumMemo(path.parent / "memo.sqlite")
        studies = _studies_file(base, path.parent)
        labels = _labels(store, base, studies, path, base.root / "outcomes.yaml", memo)
        clean = _labels(ArtifactStore(path.parent / "clean"), base, studies, base.root / "events.parquet",
                        base.root / "outcomes.yaml", memo)
        pd.testing.assert_frame_equal(labels, clean)
    else:
        raise AssertionError(f"no check for accepted case {c.id}")


def _studies_file(base: Base, d: Path) -> Path:
    base.studies.drop(columns="image_path").to_parquet(d / "studies_clean.parquet")
    return d / "studies_clean.parquet"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: Base, tmp_path: Path) -> None:
    path = case.make(base, tmp_path)
    store = ArtifactStore(tmp_path / "store")
    memo = ChecksumMemo(tmp_path / "memo.sqlite")
    if case.target == "outcomes":
        if case.expect == "error":
            with pytest.raises(ContractError) as e:
                load_outcome_definitions(path)
            _check_error(case, e.value, path, store)
        else:
            labels = _labels(store, base, _studies_file(base, tmp_path), base.root / "events.parquet", path, memo)
            _check_flag(case, labels, base)
        return
    if case.target == "config":
        with pytest.raises(ContractError) as e:
            check_input_files(load_run_config(path), path)
        _check_error(case, e.value, path, store)
        return
    if case.expect == "error":
        with pytest.raises(ContractError) as e:
            _ingest(case, store, path, base, memo)
        _check_error(case, e.value, path, store)
    elif case.expect == "quarantine":
        _check_quarantine(case, store, _ingest(case, store, path, base, memo))
    elif case.expect == "flag":
        studies = path if case.target == "studies" else _studies_file(base, tmp_path)
        events = path if case.target == "events" else base.root / "events.parquet"
        _check_flag(case, _labels(store, base, studies, events, base.root / "outcomes.yaml", memo), base)
    else:
        _accepted(case, store, _ingest(case, store, path, base, memo), base, path)


def test_report_excerpt_of_a_huge_report() -> None:
    """A 2 MB report is kept whole in the artifacts; the report page shows an excerpt."""
    from reports.feature_page import report_excerpt

    text = "liver lesion. " * 150_000
    shown = report_excerpt(text)
    assert len(shown) < 25_000 and shown.startswith("liver lesion.") and "2,100,000 characters" in shown
    assert report_excerpt("short") == "short"
