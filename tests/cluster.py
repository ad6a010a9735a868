"""Real cluster components for tests, each started on loopback in its own process group
and stopped (the whole group) afterwards: a Prefect server on SQLite, Prefect workers,
Dask schedulers and workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str] | str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` (a shell string runs under bash) in a new process group, output to `log`."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed with it
    shell = isinstance(cmd, str)
    return subprocess.Popen(["bash", "-c", cmd] if shell else cmd, cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group, SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            # the leader is gone; members of its group may linger briefly
            deadline = time.time() + timeout
            while group_alive(proc.pid) and time.time() < deadline:
                time.sleep(0.2)
            if not group_alive(proc.pid):
                return
        except subprocess.TimeoutExpired:
            continue


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(p.name))
    return out


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid`."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(check: Callable[[], object], timeout: float, what: str, poll: float = 0.5) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(poll)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def base_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_HEARTBEAT_SECONDS": "5", "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    # the venv's commands (prefect, medconcepts, dask) first, as after `source .venv/bin/activate`
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def prefect_server(home: Path, log: Path) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME (SQLite); yields the
    API URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], base_env(home), log)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: _healthy(url) or proc.poll() is not None, 240, "Prefect server")
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited {proc.returncode}: {log.read_text()[-2000:]}")
        yield url
    finally:
        stop(proc)
