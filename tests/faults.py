"""Fault-injection helpers shared by tests: find a run's processes, kill a command's process
group at a point of its progress through the artifact store, and compare stores.

A kill point is read from the store alone (black box): "published" once an artifact of a
kind appears whole (its manifest is in place), "started" once a kind's temporary folder
appears (the stage is writing), "committed" once embedding batches are committed,
optionally followed by a delay. Nothing in the product knows about these tests.

`Zygote` runs many CLI invocations fast: one process imports the CLI and its flows once,
then forks a fresh process per run (its own session and process group, as a shell would
start it), so twenty kill-and-rerun rounds do not pay twenty interpreter starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
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


def temp_names(store: Path, kind: str) -> set[str]:
    return {p.name for p in (store / "artifacts" / kind).glob(".tmp-*")}


@dataclass(frozen=True)
class Snapshot:
    """What the store held when a run started: kill points count from there, so a rerun
    is killed at its own progress, not at what earlier runs (or their debris) left."""

    published: dict[str, int]
    temps: dict[str, set[str]]
    parts: int

    @classmethod
    def of(cls, store: Path) -> Snapshot:
        kinds = [d.name for d in (store / "artifacts").glob("*")] if (store / "artifacts").is_dir() else []
        return cls({k: published(store, k) for k in kinds}, {k: temp_names(store, k) for k in kinds},
                   cache_parts(store))


@dataclass(frozen=True)
class KillPoint:
    """Kill once this run has `when` `kind` (published: its n-th new artifact is whole;
    started: a new temporary folder is open; committed: its n-th new embedding batch is
    committed), after `delay_s` more."""

    name: str
    kind: str
    when: Literal["published", "started", "committed"] = "published"
    n: int = 1
    delay_s: float = 0.0

    def reached(self, store: Path, before: Snapshot) -> bool:
        new = published(store, self.kind) - before.published.get(self.kind, 0)
        if self.when == "published":
            return new >= self.n
        if self.when == "started":
            return bool(temp_names(store, self.kind) - before.temps.get(self.kind, set())) or new >= self.n
        return cache_parts(store) - before.parts >= self.n


@dataclass
class Outcome:
    returncode: int | None
    killed: bool
    log: str
    writing_at_kill: list[str] = field(default_factory=list)  # kinds with a temporary folder open
    pid: int = 0  # also the process group


def run_and_kill(argv: Sequence[str], env: Mapping[str, str], store: Path, log: Path,
                 point: KillPoint | None = None, timeout: float = 600.0,
                 sig: int = signal.SIGKILL, popen: Callable[..., subprocess.Popen[bytes]] | None = None
                 ) -> Outcome:
    """Run `argv` in its own process group; at `point` send `sig` to the whole group."""
    with open(log, "ab") as out:
        proc = (popen or subprocess.Popen)(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    killed, at_kill, before = False, [], Snapshot.of(store)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if point is not None and not killed and point.reached(store, before):
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
    return Outcome(proc.returncode, killed, log.read_text(errors="replace"), at_kill, proc.pid)


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


# ---------------------------------------------------------------- many runs, one import
_ZYGOTE = r"""
import json, os, signal, sys
for name in sys.argv[1:]:
    __import__(name)
import flows.cli
print("READY", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            flows.cli.main(job["argv"], standalone_mode=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print("PID", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("EXIT", pid, os.waitstatus_to_exitcode(status), flush=True)
"""


class Zygote:
    """A process that imported `preload` once and forks one CLI process per `run`."""

    def __init__(self, env: Mapping[str, str], preload: Sequence[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, *preload], env=dict(env), cwd=str(cwd),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(300) == "READY", "zygote failed to import the CLI"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _next(self, timeout: float) -> str:
        return self.lines.get(timeout=timeout)

    def start(self, argv: Sequence[str], log: Path) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"argv": list(argv), "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        word, pid = self._next(60).split()
        assert word == "PID"
        return int(pid)

    def exit_code(self, pid: int, timeout: float = 0.0) -> int | None:
        """The run's exit status once it ended (negative: killed by that signal)."""
        try:
            line = self._next(timeout) if timeout else self.lines.get_nowait()
        except queue.Empty:
            return None
        word, got, code = line.split()
        assert word == "EXIT" and int(got) == pid, line
        return int(code)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            f = _stat_fields(int(p.name))
            if f is not None and f[0] != "Z" and int(f[2]) == pgid:
                out.append(int(p.name))
    return out


@dataclass
class Timeline:
    """When each stage of a run started writing and published, seconds from the start."""

    started: dict[str, float] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    first_commit: float | None = None

    def observe(self, store: Path, t: float) -> None:
        arts = store / "artifacts"
        for d in arts.glob("*") if arts.is_dir() else []:
            kind = d.name
            if kind not in self.started and any(d.glob(".tmp-*")):
                self.started[kind] = t
            if kind not in self.published and any(d.glob("[!.]*/manifest.json")):
                self.published[kind] = t
                self.started.setdefault(kind, t)
        if self.first_commit is None and cache_parts(store):
            self.first_commit = t


def run_zygote(z: Zygote, argv: Sequence[str], store: Path, log: Path, point: KillPoint | None = None,
               timeline: Timeline | None = None, timeout: float = 600.0) -> Outcome:
    """`run_and_kill` for a zygote-forked run; fills `timeline` while it runs."""
    t0, before = time.monotonic(), Snapshot.of(store)
    pid = z.start(argv, log)
    killed, at_kill, code = False, [], None
    while code is None:
        now = time.monotonic() - t0
        if now > timeout:
            os.killpg(pid, signal.SIGKILL)
            raise TimeoutError(f"{argv} did not finish within {timeout} s; log {log}")
        if timeline is not None:
            timeline.observe(store, now)
        if point is not None and not killed and point.reached(store, before):
            time.sleep(point.delay_s)
            at_kill = sorted({p.parent.name for p in (store / "artifacts").glob("*/.tmp-*")}
                             - {k for k, names in before.temps.items() if names})
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            killed = True
        code = z.exit_code(pid, 0.005)
    return Outcome(code, killed, log.read_text(errors="replace"), at_kill, pid)
