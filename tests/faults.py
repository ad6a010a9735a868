"""Fault-injection helpers shared by tests: find a run's processes, kill a command's process
group at a point of its progress through the artifact store, and compare stores.

A kill point is read from the store alone (black box): "published" once an artifact of a
kind appears whole (its manifest is in place), "started" once a kind's temporary folder
appears (the stage is writing), optionally followed by a delay. Nothing in the product
knows about these tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# ---------------------------------------------------------------- processes


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            f = _stat_fields(int(p.name))
            if f is not None and int(f[1]) == pid:
                out.append(int(p.name))
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def processes_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment has key=value: every process a run started
    (server, workers, pools) inherits its PREFECT_HOME, wherever it was re-parented."""
    needle = f"{key}={value}".encode() + b"\0"
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            env = (p / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if needle in env and alive(int(p.name)):
            found.append(int(p.name))
    return found


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# ---------------------------------------------------------------- the store as a progress signal


def published(store: Path, kind: str) -> int:
    """Whole artifacts of `kind` (manifest in place)."""
    return sum(1 for _ in (store / "artifacts" / kind).glob("[!.]*/manifest.json"))


def writing(store: Path, kind: str) -> bool:
    """A stage of `kind` has its temporary folder open."""
    return any((store / "artifacts" / kind).glob(".tmp-*"))


def cache_parts(store: Path) -> int:
    """Committed embedding batches."""
    return sum(1 for _ in (store / "embedding_cache").glob("*/*/month=*/part-*.parquet"))


@dataclass(frozen=True)
class KillPoint:
    """Kill once `kind` is `when` (published: n-th artifact whole; started: temporary
    folder open; committed: n-th embedding batch committed), then after `delay_s`."""

    name: str
    kind: str
    when: Literal["published", "started", "committed"] = "published"
    n: int = 1
    delay_s: float = 0.0

    def reached(self, store: Path) -> bool:
        if self.when == "published":
            return published(store, self.kind) >= self.n
        if self.when == "started":
            return writing(store, self.kind) or published(store, self.kind) >= self.n
        return cache_parts(store) >= self.n


@dataclass
class Outcome:
    returncode: int | None
    killed: bool
    log: str
    writing_at_kill: list[str] = field(default_factory=list)  # kinds with a temporary folder open


def run_and_kill(argv: Sequence[str], env: Mapping[str, str], store: Path, log: Path,
                 point: KillPoint | None = None, timeout: float = 600.0,
                 sig: int = signal.SIGKILL, popen: Callable[..., subprocess.Popen[bytes]] | None = None
                 ) -> Outcome:
    """Run `argv` in its own process group; at `point` send `sig` to the whole group."""
    with open(log, "ab") as out:
        proc = (popen or subprocess.Popen)(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    killed, at_kill = False, []
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if point is not None and not killed and point.reached(store):
            time.sleep(point.delay_s)
            at_kill = sorted(p.parent.name for p in (store / "artifacts").glob("*/.tmp-*"))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            killed = True
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise TimeoutError(f"{argv} did not finish within {timeout} s; log {log}")
    return Outcome(proc.returncode, killed, log.read_text(errors="replace"), at_kill)


# ---------------------------------------------------------------- comparing stores


def artifact_digests(store: Path) -> dict[tuple[str, str], str]:
    """(kind, version) -> content digest of every whole artifact."""
    out = {}
    for m in (store / "artifacts").glob("*/[!.]*/manifest.json"):
        out[(m.parent.parent.name, m.parent.name)] = json.loads(m.read_text())["digest"]
    return out


def manifest_without_time(path: Path) -> dict:
    m = json.loads(path.read_text())
    m.pop("created", None)
    return m


def file_hashes(root: Path, pattern: str = "**/*") -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob(pattern)) if p.is_file()}


def temporaries(roots: Iterable[Path]) -> list[Path]:
    """Hidden temporary files or folders of atomic writes under `roots`."""
    found: list[Path] = []
    for root in roots:
        for p in root.rglob(".*"):
            if ".tmp" in p.name or p.name.startswith(".trash-") or p.name.startswith(".tmp-"):
                found.append(p)
    return found
