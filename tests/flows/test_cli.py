"""The command line: help texts, validate, SIGTERM and SIGKILL leave no Prefect server behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def _start_run(config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """The CLI on `config` in embedded mode; returns it once its own server is up."""
    home = str(tmp_path / "prefect_home")
    env = {**os.environ, "PREFECT_HOME": home}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    servers: list[int] = []

    def server_up() -> bool:
        servers[:] = [c for c in children(proc.pid) if b"flows.prefect_server" in cmdline(c)]
        return bool(servers) or proc.poll() is not None

    wait_until(server_up, 180)
    assert servers, "the run's Prefect server never started"
    return proc, servers[0], home


@pytest.mark.prefect
def test_sigterm_exits_cleanly_and_stops_server(tiny_cohort: Path, tmp_path: Path) -> None:
    proc, server, home = _start_run(write_tiny_config(tiny_cohort, tmp_path), tmp_path)
    time.sleep(2)  # into the run
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    text = err.decode(errors="replace")[-3000:]
    assert proc.returncode == 128 + signal.SIGTERM, text
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    assert wait_until(lambda: not alive(server), 10), "Prefect server left running after SIGTERM"
    assert wait_until(lambda: not processes_with_env("PREFECT_HOME", home), 10)


@pytest.mark.prefect
@pytest.mark.slow
def test_sigkill_of_the_cli_alone_stops_its_server(tiny_cohort: Path, tmp_path: Path) -> None:
    """Only the CLI process is killed (as the OOM killer or `kill -9 PID` would): its server
    must not survive it."""
    proc, server, home = _start_run(write_tiny_config(tiny_cohort, tmp_path), tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    assert wait_until(lambda: not alive(server), 15), "Prefect server orphaned by SIGKILL of the CLI"
    assert wait_until(lambda: not processes_with_env("PREFECT_HOME", home), 15)
