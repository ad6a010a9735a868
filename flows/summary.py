"""What the CLI prints after a run: artifacts, quarantine, top hits, the self-check table."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
import pyarrow.parquet as pq

from data_contracts.store import ArtifactStore
from flows.discovery import RunResult
from tasks.ingest import quarantine_summary
from tasks.outcomes import data_path


def print_summary(result: RunResult, top: int = 3) -> None:
    store = ArtifactStore(result.store)
    click.echo(f"\nrun record: {result.run_record}")
    refs = result.artifacts()
    for ref in refs:
        click.echo(f"  {ref.kind:<16} {ref.version}")
    q = quarantine_summary(store, refs)
    if len(q):
        # Counts per reason only: study ids and row contents stay in the artifacts'
        # quarantine tables, out of logs that a scheduler may ship anywhere.
        click.echo(f"quarantined rows: {len(q)} (each artifact's quarantine table lists them)")
        groups = q.fillna({"column": "-"}).groupby(["artifact", "column", "reason"], sort=True).size().reset_index()
        for kind, column, why, n in groups.itertuples(index=False):
            click.echo(f"  [{kind}] {column}: {n} row(s): {why}")
    # Only the ranked rows: a hospital run has millions of associations rows.
    ranked = pq.read_table(data_path(store, result.associations), filters=[("rank", "<=", top)]).to_pandas()
    click.echo("\ntop associations (discovery rank within modality x outcome, age+sex adjusted):")
    cols = ["outcome_id", "modality", "unit", "feature_id", "rank", "n_tested", "n_exposed", "odds_ratio",
            "adj_odds_ratio", "score_q", "replicated"]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        click.echo(ranked.sort_values(["outcome_id", "modality", "rank"])[cols].to_string(index=False))
    click.echo(f"\nreport: {result.report_index}")


def print_check(path: Path) -> None:
    rows = pd.DataFrame(json.loads(path.read_text()))
    click.echo("\nself-check against the planted truth:")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        click.echo(rows.to_string(index=False))
    labels = path.parent / "demo_labels.json"
    if labels.is_file():
        click.echo("\nlabels of the planted findings' best findings (family, or feature in no family; "
                   "held-out balanced accuracy; truth_ba: the planted truth's own score on the same reports, "
                   "what a label naming exactly the finding scores; shuffled-label baseline):")
        table = pd.DataFrame(json.loads(labels.read_text()))
        cols = [c for c in ("finding", "modality", "unit", "feature_id", "label", "heldout_ba", "ba_ci_low",
                            "ba_ci_high", "truth_ba", "baseline_ba", "passed") if c in table.columns]
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 50):
            click.echo(table[cols].to_string(index=False))
