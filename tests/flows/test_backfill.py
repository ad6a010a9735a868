"""The backfill flow and command: a month range is embedded once, then never again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from flows.cli import main
from tests.conftest import write_tiny_config


def test_backfill_help_and_bad_month(tiny_cohort: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    sub = runner.invoke(main, ["backfill", "--help"])
    assert sub.exit_code == 0 and "--since" in sub.output and "--until" in sub.output
    config = write_tiny_config(tiny_cohort, tmp_path)
    res = runner.invoke(main, ["backfill", str(config), "--since", "2024-13"])
    assert res.exit_code != 0 and "YYYY-MM" in res.output


@pytest.mark.prefect
def test_backfill_range_computes_each_month_once(prefect_harness: None, tiny_cohort: Path, tmp_path: Path) -> None:
    from flows.backfill import backfill

    config = write_tiny_config(tiny_cohort, tmp_path / "run")
    months = pd.to_datetime(pd.read_parquet(tiny_cohort / "studies.parquet")["study_time"]).dt.strftime("%Y-%m")
    lo, hi = sorted(months.unique())[1], sorted(months.unique())[3]
    want = {m: int(n) for m, n in months[(months >= lo) & (months <= hi)].value_counts().items()}
    first = backfill(str(config), lo, hi, "report")
    assert first == {"report": want}
    assert backfill(str(config), lo, hi, "report") == {"report": {}}  # nothing recomputed
