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


def _setup_env(prefect_home: Path, own_server: bool = True) -> OwnedServer | None:
    """Defaults that must be in place before prefect is imported; starts the run's own
    Prefect server (not yet waited for) unless PREFECT_API_URL names one or `own_server`
    is False (commands that run no flow)."""
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
    if os.environ.get("PREFECT_API_URL") or not own_server:
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


def _overrides(store: str | None, dask_address: str | None) -> Any:
    from data_contracts.overrides import RunOverrides
    from data_contracts.runner_config import RunnerConfig

    if store is None and dask_address is None:
        return None
    runner = RunnerConfig(kind="dask", address=dask_address) if dask_address else None
    return RunOverrides(store=store, runner=runner)


_store_option = click.option("--store", default=None, metavar="PATH|URL",
                             help="Override the config's store (absolute path or URL, e.g. s3://bucket/prefix).")
_dask_option = click.option("--dask-address", default=None, metavar="tcp://HOST:PORT",
                            help="Override the config's runner: run heavy tasks on this Dask scheduler.")


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
@click.option("--sae-policy", type=click.Choice(["train", "reuse"]), default="train", show_default=True,
              help="train: train the SAE sweep and publish the selected SAE; reuse: encode with the published "
                   "SAE (as the nightly deployment does), training only if there is none.")
@_store_option
@_dask_option
def run(config: Path, sae_policy: str, store: str | None, dask_address: str | None) -> None:
    """Run the discovery flow described by CONFIG (YAML): ingest, embed, train SAEs,
    cohorts, outcomes, associations, interpretations and the HTML report."""
    from data_contracts.errors import ContractError
    from data_contracts.overrides import load_config
    from data_contracts.validate import check_input_files

    try:
        overrides = _overrides(store, dask_address)
        cfg = load_config(config, overrides)
        check_input_files(cfg, config)
    except (ContractError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    server = _setup_env(_store_prefect_home(cfg.store))
    from flows.discovery import discovery
    from flows.summary import print_summary

    t0 = time.perf_counter()
    result = _run_flow(server, discovery, str(config.resolve()), sae_policy, overrides)
    print_summary(result)
    click.echo(f"wall time: {time.perf_counter() - t0:.1f} s")


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", default=None, metavar="YYYY-MM", help="First study month to embed (inclusive).")
@click.option("--until", default=None, metavar="YYYY-MM", help="Last study month to embed (inclusive).")
@click.option("--modality", type=click.Choice(["report", "image"]), default=None,
              help="Only this modality (default: every modality in CONFIG).")
@click.option("--dry-run", is_flag=True, help="Show the month partitions and what would run; start nothing.")
@click.option("--deployment", default=None, metavar="FLOW/DEPLOYMENT",
              help="Backfill deployment (default medconcepts-backfill/backfill-month when PREFECT_API_URL is set).")
@click.option("--local", "in_process", is_flag=True, help="Run in this process even if PREFECT_API_URL is set.")
@click.option("--no-wait", is_flag=True, help="Create the partition runs and return without following them.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between progress polls.")
@_store_option
@_dask_option
def backfill(config: Path, since: str | None, until: str | None, modality: str | None, dry_run: bool,
             deployment: str | None, in_process: bool, no_wait: bool, poll: float, store: str | None,
             dask_address: str | None) -> None:
    """Embed the studies of CONFIG whose study month lies in [--since, --until] with the
    configured encoders, into the store's incremental embedding cache. Studies already
    embedded by the same encoder (name, weights, preprocessing) are skipped, so a re-run
    or an overlapping range computes nothing twice; a later `run` reuses the vectors.

    With PREFECT_API_URL set (and not --local), each month is one flow run of the
    backfill deployment (see `medconcepts deploy`), created with an idempotency key per
    partition: repeating the command starts nothing twice, and after a crash it resumes
    with the months not yet committed. Progress is shown until every run is final."""
    from data_contracts.embedding_cache import check_month
    from data_contracts.errors import ContractError
    from data_contracts.overrides import load_config
    from data_contracts.validate import check_input_files

    try:
        overrides = _overrides(store, dask_address)
        cfg = load_config(config, overrides)
        check_input_files(cfg, config)
        for m in (since, until):
            if m is not None:
                check_month(m)
    except (ContractError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    if os.environ.get("PREFECT_API_URL") and not in_process:
        if since is None or until is None:
            raise click.ClickException("--since and --until are required to backfill through a deployment")
        _backfill_runs(str(config.resolve()), since, until, modality, overrides, deployment, dry_run, no_wait, poll)
        return
    if dry_run:  # reads inputs and the cache only: no Prefect server
        _setup_env(_store_prefect_home(cfg.store), own_server=False)
        from flows.backfill_plan import pending_months

        click.echo(json.dumps({"pending": pending_months(str(config.resolve()), since, until, modality, overrides)},
                              indent=2))
        return
    server = _setup_env(_store_prefect_home(cfg.store))
    from flows.backfill import backfill as backfill_flow

    t0 = time.perf_counter()
    counts = _run_flow(server, backfill_flow, str(config.resolve()), since, until, modality, overrides)
    click.echo(json.dumps({"computed": counts, "wall_s": round(time.perf_counter() - t0, 1)}, indent=2))


def _backfill_runs(config: str, since: str, until: str, modality: str | None, overrides: Any,
                   deployment: str | None, dry_run: bool, no_wait: bool, poll: float) -> None:
    from tqdm import tqdm

    from flows.backfill_runs import DEFAULT_DEPLOYMENT, FINAL, follow, start

    plan = start(deployment or DEFAULT_DEPLOYMENT, config, since, until, modality, overrides, dry_run)
    if not (dry_run or no_wait):
        with tqdm(total=sum(p.run_id is not None for p in plan.partitions), desc="month partitions",
                  unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            follow(plan, poll_s=poll, on_progress=progress)
    click.echo(json.dumps(plan.summary(), indent=2))
    failed = [p.month for p in plan.partitions if p.state in FINAL and p.state != "COMPLETED"]
    if failed and not dry_run:
        raise click.ClickException(f"partitions not committed: {failed}; run the same command again to retry them")


@main.command()
@click.option("--config", "config", required=True, metavar="PATH",
              help="Run config path as the workers see it (deployment parameter).")
@click.option("--prefect-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Deployments file (default ./prefect.yaml, else the one beside the package).")
@click.option("--timezone", default=None, help="IANA time zone of the schedules (default: this machine's).")
@click.option("--nightly-cron", default=None, help="Cron of nightly-discovery (default in prefect.yaml: 0 2 * * *).")
@click.option("--retrain-cron", default=None, help="Cron of sae-retrain (default in prefect.yaml: 0 3 * * 0, weekly).")
@click.option("--cpu-pool", default="cpu", show_default=True, help="Work pool of CPU flows (type process).")
@click.option("--gpu-pool", default="gpu", show_default=True, help="Work pool of GPU flows.")
@click.option("--gpu-pool-type", type=click.Choice(["kubernetes", "process"]), default="kubernetes",
              show_default=True, help="Type of the GPU pool if it must be created (process: a GPU host's worker).")
@_store_option
@_dask_option
def deploy(config: str, prefect_file: Path | None, timezone: str | None, nightly_cron: str | None,
           retrain_cron: str | None, cpu_pool: str, gpu_pool: str, gpu_pool_type: str, store: str | None,
           dask_address: str | None) -> None:
    """Register the deployments of prefect.yaml (nightly-discovery, sae-retrain,
    backfill-month) against the Prefect server at PREFECT_API_URL, creating the work pools
    if missing (GPU pool: kubernetes with docker/gpu-job-template.json, which requests
    nvidia.com/gpu). Running it again updates them."""
    if not os.environ.get("PREFECT_API_URL"):
        raise click.ClickException("set PREFECT_API_URL to the Prefect server, e.g. http://localhost:4200/api")
    from flows.deploy import DeployOptions, find_prefect_yaml, local_timezone
    from flows.deploy import deploy as deploy_all

    try:
        opts = DeployOptions(config=config, timezone=timezone or local_timezone(), nightly_cron=nightly_cron,
                             retrain_cron=retrain_cron, cpu_pool=cpu_pool, gpu_pool=gpu_pool,
                             gpu_pool_type=gpu_pool_type,
                             overrides=_overrides(store, dask_address))
        summary = deploy_all(find_prefect_yaml(prefect_file), opts)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(summary, indent=2))


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
