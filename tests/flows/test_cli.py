"""The command line: help texts, validate, and no embedded server left behind on SIGTERM."""

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


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.prefect
def test_sigterm_leaves_no_server(tiny_cohort: Path, tmp_path: Path) -> None:
    config = write_tiny_config(tiny_cohort, tmp_path)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    deadline = time.time() + 120
    while time.time() < deadline and server is None and proc.poll() is None:
        for child in _children(proc.pid):
            if b"uvicorn" in Path(f"/proc/{child}/cmdline").read_bytes():
                server = child
        time.sleep(0.2)
    assert server is not None, "the embedded Prefect server never started"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    for _ in range(50):
        if not _alive(server):
            break
        time.sleep(0.2)
    assert not _alive(server), "embedded Prefect server left running after SIGTERM"
