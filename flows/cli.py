"""The `medconcepts` command line.

Prefect needs an API server. Unless PREFECT_API_URL points at one, the CLI starts a
temporary server for the run (flows/prefect_server.py) that exits with the CLI however the
CLI ends, SIGKILL included. SIGTERM is turned into a clean exit with a message: the server is
stopped, committed artifacts and embedding batches stay, and the same command resumes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from flows.prefect_server import OwnedServer

EXIT_CHECK_FAILED = 3
SERVER_START_TIMEOUT_S = 180.0  # the server takes 10-17 s to start on 2 busy cores


class Terminated(SystemExit):
    """SIGTERM arrived: leave now (exit status 128 + 15)."""


def _setup_env(prefect_home: Path) -> OwnedServer | None:
    """Defaults that must be in place before prefect is imported; starts the run's own
    Prefect server (not yet waited for) unless PREFECT_API_URL names one."""
    defaults = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    home = Path(os.environ["PREFECT_HOME"])  # the caller's, if set
    home.mkdir(parents=True, exist_ok=True)
    if os.environ.get("PREFECT_API_URL"):
        return None
    server = OwnedServer(home / "server.log")
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    # Until the flow starts (imports take seconds) SIGTERM leaves at once, cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: _leave(server, drain=False))
    return server


def _store_prefect_home(store: Path | str) -> Path:
    """Embedded Prefect state beside a local store; in the local cache for a URL store."""
    from data_contracts.storage import cache_dir

    return cache_dir() / "prefect" if isinstance(store, str) else Path(store) / ".prefect"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(128 + signum)


def _leave(server: OwnedServer | None, drain: bool = True) -> None:
    click.echo("medconcepts: stopped by SIGTERM. Committed artifacts and embedding batches are kept; "
               "run the same command again to resume.", err=True)
    _stop(server, drain)
    sys.stdout.flush()
    sys.stderr.flush()
    # Worker threads may be inside a long stage; their half-written temporary files are
    # swept by the next run. Exit now instead of joining them at interpreter shutdown.
    os._exit(128 + signal.SIGTERM)


def _drain_logs() -> None:
    if "prefect" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        # Send buffered run logs while the server is still up.
        APILogWorker.drain_all(timeout=5)


def _run_flow(server: OwnedServer | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if server is not None:
            server.wait_ready(SERVER_START_TIMEOUT_S)
        return fn(*args, **kwargs)
    except Terminated:
        _leave(server)
        raise  # not reached: _leave exits
    finally:
        _stop(server)


def _stop(server: OwnedServer | None, drain: bool = True) -> None:
    """Send the run's buffered logs (not while prefect may be half imported), then stop
    the server."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    try:
        if drain:
            _drain_logs()
    finally:
        if server is not None:
            server.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """medconcepts: find medical concepts in CT and report embeddings with sparse
    autoencoders, and rank which of them foretell later diagnoses.

    Every stage writes a versioned parquet artifact to the store; re-running with the same
    inputs reuses them. Runs use Prefect (embedded server unless PREFECT_API_URL is set).
    """


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the synthetic inputs, the artifact store, the report and demo_check.json.")
@click.option("--patients", default=2000, show_default=True, help="Number of synthetic patients.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic cohort.")
@click.option("--no-check", is_flag=True, help="Do not fail when the planted truth is not rediscovered.")
def demo(out_dir: Path, patients: int, seed: int, no_check: bool) -> None:
    """Generate a synthetic cohort with planted findings (CT volumes, reports, MEDS events),
    run the whole discovery flow offline, and check that the planted finding -> outcome
    links are rediscovered (exit code 3 if not, unless --no-check)."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    server = _setup_env(out_dir / ".prefect")
    from flows.demo import demo as demo_flow
    from flows.summary import print_check, print_summary

    t0 = time.perf_counter()
    result, ok = _run_flow(server, demo_flow, str(out_dir), patients, seed)
    print_summary(result)
    print_check(out_dir / "demo_check.json")
    click.echo(f"wall time: {time.perf_counter() - t0:.1f} s")
    if not ok:
        click.echo("self-check FAILED: a modality that carries a planted finding did not find it (no cohort "
                   "with Jaccard >= 1/3 ranked within 3 for the linked outcome), or the age-confounded "
                   "finding ranked within 3 (demo_check.json, rows with passed false), or a planted finding's best "
                   "feature got no label naming it (demo_labels.json)", err=True)
        if not no_check:
            sys.exit(EXIT_CHECK_FAILED)
    else:
        click.echo("self-check passed")


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run(config: Path) -> None:
    """Run the discovery flow described by CONFIG (YAML): ingest, embed, train SAEs,
    cohorts, outcomes, associations, interpretations and the HTML report."""
    from data_contracts.config import load_run_config
    from data_contracts.errors import ContractError
    from data_contracts.validate import check_input_files

    try:
        cfg = load_run_config(config)
        check_input_files(cfg, config)
    except ContractError as e:
        raise click.ClickException(str(e)) from e
    server = _setup_env(_store_prefect_home(cfg.store))
    from flows.discovery import discovery
    from flows.summary import print_summary

    t0 = time.perf_counter()
    result = _run_flow(server, discovery, str(config.resolve()))
    print_summary(result)
    click.echo(f"wall time: {time.perf_counter() - t0:.1f} s")


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", default=None, metavar="YYYY-MM", help="First study month to embed (inclusive).")
@click.option("--until", default=None, metavar="YYYY-MM", help="Last study month to embed (inclusive).")
@click.option("--modality", type=click.Choice(["report", "image"]), default=None,
              help="Only this modality (default: every modality in CONFIG).")
def backfill(config: Path, since: str | None, until: str | None, modality: str | None) -> None:
    """Embed the studies of CONFIG whose study month lies in [--since, --until] with the
    configured encoders, into the store's incremental embedding cache. Studies already
    embedded by the same encoder (name, weights, preprocessing) are skipped, so a re-run
    or an overlapping range computes nothing twice; a later `run` reuses the vectors."""
    from data_contracts.config import load_run_config
    from data_contracts.embedding_cache import check_month
    from data_contracts.errors import ContractError
    from data_contracts.validate import check_input_files

    try:
        cfg = load_run_config(config)
        check_input_files(cfg, config)
        for m in (since, until):
            if m is not None:
                check_month(m)
    except (ContractError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    server = _setup_env(_store_prefect_home(cfg.store))
    from flows.backfill import backfill as backfill_flow

    t0 = time.perf_counter()
    counts = _run_flow(server, backfill_flow, str(config.resolve()), since, until, modality)
    click.echo(json.dumps({"computed": counts, "wall_s": round(time.perf_counter() - t0, 1)}, indent=2))


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(config: Path) -> None:
    """Check CONFIG and the inputs it names without running anything: config fields,
    outcome definitions, the studies and MEDS tables against their contracts (rows that
    would be quarantined are counted), and that each encoder name is known."""
    from flows.validation import validate_run

    try:
        report = validate_run(config)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
