from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data_contracts.config import load_outcome_definitions, load_run_config
from data_contracts.errors import ContractError
from data_contracts.validate import check_events, check_studies, read_table_file


def _studies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study_id": ["a", "b", "b", "c", "d"],
            "subject_id": [1, 2, 3, 4, 5],
            "study_time": ["2020-01-01", "2020-02-01", "2020-03-01", "not a date", "2020-05-01"],
            "report_text": ["x", "y", "z", "w", None],
        }
    )


def test_studies_row_problems_go_to_quarantine() -> None:
    checked = check_studies(_studies(), "studies.csv")
    assert list(checked.data["study_id"]) == ["a", "d"]
    q = checked.quarantine.sort_values("row")
    assert list(q["row"]) == [1, 2, 3]
    assert "duplicate study_id" in q.iloc[0]["reason"]
    assert q.iloc[2]["column"] == "study_time" and "cannot read" in q.iloc[2]["reason"]
    assert set(checked.data.columns) == {"study_id", "subject_id", "study_time", "image_path", "report_text"}


def test_mixed_timestamp_formats_parse_as_wall_clock() -> None:
    """An offset is dropped, not converted: values with and without one (two systems
    merged) stay on the local clock MEDS times use, so same-day rules see the same day."""
    times = ["2020-01-01", "2020-05-01T13:45:00+02:00", "2020-05-02 23:30Z", "2020-05-03T08:00:00.5-0500"]
    df = pd.DataFrame({"study_id": list("abcd"), "subject_id": [1, 2, 3, 4], "study_time": times})
    checked = check_studies(df, "s.csv")
    assert checked.quarantine.empty
    assert checked.data["study_time"].tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-05-01 13:45"),
                                                   pd.Timestamp("2020-05-02 23:30"),
                                                   pd.Timestamp("2020-05-03 08:00:00.5")]
    aware = pd.Series(pd.to_datetime(["2020-05-01 13:45"]).tz_localize("Europe/Berlin"))
    tz = check_studies(df.iloc[:1].assign(study_time=aware), "s.parquet")
    assert tz.data["study_time"].tolist() == [pd.Timestamp("2020-05-01 13:45")]


def test_padded_study_ids_count_as_duplicates() -> None:
    df = _studies().iloc[[0, 4, 1]].assign(study_id=["a", " a ", "b"])
    checked = check_studies(df, "s.csv")
    assert list(checked.data["study_id"]) == ["b"]
    assert list(checked.quarantine["row"]) == [0, 1]
    assert checked.quarantine["reason"].str.contains("duplicate study_id").all()


def test_missing_column_names_file_and_column() -> None:
    with pytest.raises(ContractError) as e:
        check_studies(_studies().drop(columns="subject_id"), "in/studies.parquet")
    msg = str(e.value)
    assert "in/studies.parquet" in msg and "subject_id" in msg and "expected" in msg


def test_meds_wrong_column_type_is_clear_error() -> None:
    ev = pd.DataFrame({"subject_id": ["p1", "p2"], "time": ["2020-01-01"] * 2, "code": ["A", "B"]})
    with pytest.raises(ContractError) as e:
        check_events(ev, "events.parquet")
    assert "subject_id" in str(e.value) and "int64" in str(e.value)


def test_meds_partially_bad_rows_quarantined() -> None:
    ev = pd.DataFrame({"subject_id": [1, 2, 3], "time": ["2020-01-01", "bad", "2020-01-03"],
                       "code": ["A", "B", None]})
    checked = check_events(ev, "events.parquet")
    assert list(checked.data["subject_id"]) == [1]
    assert set(checked.quarantine["column"]) == {"time", "code"}


def test_csv_and_parquet_inputs(tmp_path: Path) -> None:
    df = _studies()
    df.to_csv(tmp_path / "s.csv", index=False)
    df.to_parquet(tmp_path / "s.parquet")
    a = check_studies(read_table_file(tmp_path / "s.csv"), "s.csv").data
    b = check_studies(read_table_file(tmp_path / "s.parquet"), "s.parquet").data
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ContractError, match="file not found"):
        read_table_file(tmp_path / "missing.parquet")


def test_run_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "store: st\ninputs: {studies: s.parquet, events: e.parquet, outcomes: o.yaml}\n"
        "modalities:\n  - {modality: image, encoder: {name: minilm}}\nsae: {n_features: 8, k: 16}\n"
    )
    with pytest.raises(ContractError) as e:
        load_run_config(cfg)
    assert "run.yaml" in str(e.value) and "embeds reports" in str(e.value) and "sae" in str(e.value)


def test_run_config_resolves_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "store: st\ninputs: {studies: s.parquet, events: e.parquet, outcomes: o.yaml}\n"
        "modalities:\n  - {modality: report, encoder: {name: minilm}}\n"
    )
    c = load_run_config(cfg)
    assert c.store == tmp_path / "st" and c.inputs.events == tmp_path / "e.parquet"
    assert c.report_dir == tmp_path / "report"


def test_outcome_definitions(tmp_path: Path) -> None:
    p = tmp_path / "o.yaml"
    p.write_text("outcomes:\n  - {id: hf, name: Heart failure, codes: ['ICD10CM//I50']}\n"
                 "  - {id: hf, name: again, codes: ['X']}\n")
    with pytest.raises(ContractError, match="unique"):
        load_outcome_definitions(p)
    p.write_text("outcomes:\n  - {id: hf, name: Heart failure, codes: ['ICD10CM//I50']}\n")
    assert load_outcome_definitions(p).outcomes[0].window_years == 4.0
