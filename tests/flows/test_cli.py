"""The command line: help texts, validate, SIGTERM and SIGKILL leave no Prefect server behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli import main
from tests.conftest import write_tiny_config
from tests.faults import alive, children, cmdline, processes_with_env, wait_until


def test_help_explains_each_command() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["--help"]).output
    for cmd in ("demo", "run", "validate"):
        assert cmd in out
        sub = runner.invoke(main, [cmd, "--help"])
        assert sub.exit_code == 0 and len(sub.output) > 200


def test_validate_reports_counts(tiny_cohort: Path, tmp_path: Path) -> None:
    config = write_tiny_config(tiny_cohort, tmp_path)
    res = CliRunner().invoke(main, ["validate", str(config)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["studies"]["usable"] > 60 and report["studies"]["quarantined"] == 0
    assert report["outcomes"] == ["liver_cancer", "heart_failure", "appendicitis"]


def test_validate_bad_config_names_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("store: s\ninputs: {studies: a, events: b, outcomes: c}\nmodalities: []\nsae: {k: 0}\n")
    res = CliRunner().invoke(main, ["validate", str(cfg)])
    assert res.exit_code != 0 and "bad.yaml" in res.output and "sae.k" in res.output


def _start_run(config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, str, Path]:
    """The CLI on `config` in embedded mode; returns it once its own server is up."""
    home = str(tmp_path / "prefect_home")
    env = {**os.environ, "PREFECT_HOME": home}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "cli.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    servers: list[int] = []

    def server_up() -> bool:
        servers[:] = [c for c in children(proc.pid) if b"flows.prefect_server" in cmdline(c)]
        return bool(servers) or proc.poll() is not None

    wait_until(server_up, 180)
    assert servers, "the run's Prefect server never started"
    return proc, servers[0], home, log


def _published(store: Path, kind: str) -> bool:
    return any((store / "artifacts" / kind).glob("[!.]*/manifest.json"))


@pytest.mark.prefect
def test_sigterm_exits_cleanly_and_stops_server(tiny_cohort: Path, tmp_path: Path) -> None:
    """SIGTERM while stages run: exit 143 with the message, no traceback, nothing left."""
    config = write_tiny_config(tiny_cohort, tmp_path)
    proc, server, home, log = _start_run(config, tmp_path)
    assert wait_until(lambda: _published(tmp_path / "store", "outcome_labels") or proc.poll() is not None, 300)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    text = log.read_text(errors="replace")[-3000:]
    assert proc.returncode == 128 + signal.SIGTERM, text
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    assert wait_until(lambda: not alive(server), 10), "Prefect server left running after SIGTERM"
    assert wait_until(lambda: not processes_with_env("PREFECT_HOME", home), 10)


@pytest.mark.prefect
@pytest.mark.slow
def test_sigkill_of_the_cli_alone_leaves_no_server_or_worker(tiny_cohort: Path, tmp_path: Path) -> None:
    """Only the CLI process is killed (as the OOM killer or `kill -9 PID` would), while its
    image workers run: neither its server nor the workers survive it."""
    from data_contracts.config import CTRadiomicsConfig, ModalityConfig, dump_run_config, load_run_config

    config = write_tiny_config(tiny_cohort, tmp_path)
    cfg = load_run_config(config)
    image = ModalityConfig(modality="image", encoder=CTRadiomicsConfig(n_workers=2), commit_every=4)
    dump_run_config(cfg.model_copy(update={"modalities": (image,)}), config)
    proc, server, home, _ = _start_run(config, tmp_path)

    def pool_running() -> bool:
        return any(b"multiprocessing" in cmdline(p) for p in processes_with_env("PREFECT_HOME", home))

    assert wait_until(lambda: pool_running() or proc.poll() is not None, 300) and proc.poll() is None
    proc.kill()
    proc.wait(timeout=30)
    assert wait_until(lambda: not alive(server), 15), "Prefect server orphaned by SIGKILL of the CLI"
    gone = wait_until(lambda: not processes_with_env("PREFECT_HOME", home), 20)
    assert gone, [cmdline(p)[:120] for p in processes_with_env("PREFECT_HOME", home)]
