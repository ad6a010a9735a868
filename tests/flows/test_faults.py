"""Crashes and re-runs, end to end through the CLI on a tiny two-modality cohort.

- determinism: the same inputs, copied to another folder and run with 2 threads instead
  of 1, give byte-identical artifacts (every parquet part, manifests but their creation
  time) and the same report HTML;
- fault injection: SIGKILL of the run's process group after every stage and at a seeded
  random point inside each long stage (embedding commits, SAE training, association and
  report writes), each followed by a rerun that resumes: at every kill nothing half-written
  looks whole, no process of the run survives, and the final rerun leaves the store equal
  to the uninterrupted run with no temporaries left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from data_contracts.config import dump_run_config, load_run_config
from flows.prefect_server import OwnedServer
from tests.conftest import write_tiny_config
from tests.faults import (
    KillPoint,
    Timeline,
    Zygote,
    artifact_digests,
    file_hashes,
    group_members,
    manifest_without_time,
    processes_with_env,
    run_and_kill,
    run_zygote,
    temporaries,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

STAGES = ["studies", "events", "outcome_labels", "embeddings", "sae", "sae_sweep", "activations",
          "feature_stats", "cohorts", "interpretations", "study_split", "associations", "survival", "report"]
LONG = {"embeddings": "committed", "sae": "started", "associations": "started", "report": "started"}


def _threads(n: int) -> dict[str, str]:
    return {k: str(n) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _env(home: Path, threads: int) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), **_threads(threads)}
    env.pop("PREFECT_API_URL", None)
    return env


@dataclass(frozen=True)
class Run:
    config: Path
    store: Path
    report: Path


def _setup(cohort: Path, d: Path) -> Run:
    """A copy of the inputs in `d/input` and a config that runs them into `d/store`, with
    embedding batches of 8 studies (several commits to kill between)."""
    shutil.copytree(cohort, d / "input")
    cfg = write_tiny_config(d / "input", d)
    c = load_run_config(cfg)
    c = c.model_copy(update={"modalities": tuple(m.model_copy(update={"commit_every": 8}) for m in c.modalities)})
    dump_run_config(c, cfg)
    return Run(cfg, Path(c.store), Path(str(c.report_dir)))


def _cli(run: Run, env: dict[str, str], log: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(run.config)], env=env, cwd=Path.cwd(),
                         stdout=open(log, "w"), stderr=subprocess.STDOUT, timeout=900)  # noqa: SIM115
    assert res.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def reference(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Timeline]:
    """The uninterrupted run, one thread, with when each stage wrote (to aim kills)."""
    d = tmp_path_factory.mktemp("reference")
    run = _setup(tiny_cohort, d)
    env = _env(d / "prefect", 1)
    timeline = Timeline()
    with open(d / "run.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(run.config)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while proc.poll() is None:
            timeline.observe(run.store, time.monotonic() - t0)
            time.sleep(0.01)
        assert proc.wait() == 0, (d / "run.log").read_text()[-3000:]
    return run, timeline


def _same_store(a: Path, b: Path) -> None:
    da, db = artifact_digests(a), artifact_digests(b)
    assert da == db, {"only_in_reference": sorted(set(da.items()) - set(db.items())),
                      "only_in_other": sorted(set(db.items()) - set(da.items()))}
    for kind, version in da:
        rel = Path("artifacts") / kind / version / "manifest.json"
        assert manifest_without_time(a / rel) == manifest_without_time(b / rel), rel


def test_same_inputs_elsewhere_and_two_threads_give_identical_bytes(reference: tuple[Run, Timeline],
                                                                     tiny_cohort: Path, tmp_path: Path) -> None:
    ref, _ = reference
    other = _setup(tiny_cohort, tmp_path)
    _cli(other, _env(tmp_path / "prefect", 2), tmp_path / "run.log")
    _same_store(ref.store, other.store)
    assert file_hashes(ref.report) == file_hashes(other.report) and (ref.report / "index.html").is_file()


def _points(timeline: Timeline, seed: int = 16) -> list[KillPoint]:
    """After each stage, and at a seeded random point inside each long one (a uniform
    fraction of the time the reference run spent in it)."""
    rng = np.random.default_rng(seed)
    points = []
    for kind in STAGES:
        if kind in LONG:
            start = timeline.first_commit if LONG[kind] == "committed" else timeline.started.get(kind)
            span = max(timeline.published.get(kind, 0.0) - (start or 0.0), 0.0)
            points.append(KillPoint(f"inside {kind}", kind, LONG[kind], 1, float(rng.uniform(0, span))))  # type: ignore[arg-type]
        points.append(KillPoint(f"after {kind}", kind))
    return points


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[tuple[Zygote, dict[str, str]]]:
    """A Prefect server for the chain of runs and a zygote that forks each run."""
    home = tmp_path / "prefect"
    home.mkdir()
    saved = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)  # the server process's state
    server = OwnedServer(home / "server.log")
    try:
        server.start()
        server.wait_ready(180)
        env = {**_env(home, 1), "PREFECT_API_URL": server.api_url}
        preload = ["flows.discovery", "flows.summary", "tasks.sae", "tasks.encoders", "transformers",
                   "monai.transforms", "monai.data"]  # what a run imports (none starts a thread)
        z = Zygote(env, preload, Path.cwd())
        try:
            yield z, env
        finally:
            z.close()
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = saved


def test_kill_at_every_stage_then_rerun_equals_uninterrupted(reference: tuple[Run, Timeline], tiny_cohort: Path,
                                                             tmp_path: Path,
                                                             zygote: tuple[Zygote, dict[str, str]]) -> None:
    ref, timeline = reference
    want = artifact_digests(ref.store)
    run = _setup(tiny_cohort, tmp_path / "chain")
    z, _ = zygote
    points = _points(timeline)

    # The first kill hits the real CLI in embedded mode: its own server must die with it.
    home = tmp_path / "embedded_prefect"
    first = run_and_kill([sys.executable, "-m", "flows.cli", "run", str(run.config)], _env(home, 1), run.store,
                         tmp_path / "embedded.log", points[0])
    assert first.killed and first.returncode == -9, first.log[-2000:]
    assert wait_until(lambda: not processes_with_env("PREFECT_HOME", str(home)), 15), "orphaned Prefect server"

    landed = []
    for i, point in enumerate(points[1:], 1):
        t0 = time.monotonic()
        out = run_zygote(z, ["run", str(run.config)], run.store, tmp_path / f"run{i}.log", point)
        landed.append((point.name, out.killed, out.returncode, out.writing_at_kill, round(time.monotonic() - t0, 1)))
        assert out.returncode in (-9, 0), out.log[-3000:]
        assert not group_members(out.pid), f"{point.name}: processes of the killed run survive"
        got = artifact_digests(run.store)
        assert all(want.get(k) == v for k, v in got.items()), f"{point.name}: an artifact differs or is half"
    final = run_zygote(z, ["run", str(run.config)], run.store, tmp_path / "final.log")
    assert final.returncode == 0, final.log[-3000:]
    _same_store(ref.store, run.store)
    assert file_hashes(ref.report) == file_hashes(run.report)
    assert temporaries([run.store, run.report.parent]) == []
    inside = [n for n, killed, _, writing, _ in landed if n.startswith("inside") and killed and writing]
    print("kills (point, killed, exit, writing at the kill, s):", *landed, sep="\n  ")
    assert sum(k for _, k, _, _, _ in landed) >= len(points) - 3  # nearly every point was reached before the end
    assert inside, "no kill landed while a stage was writing"
