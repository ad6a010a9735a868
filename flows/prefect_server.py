"""The temporary Prefect API server a CLI run owns, and that dies with it.

Without PREFECT_API_URL the CLI needs an API server for the run. Prefect's own ephemeral
server is a plain child process: if the CLI is killed outright (SIGKILL, the OOM killer, a
scheduler that kills only the parent) it keeps running, holding its port and database. So
the CLI starts the same server (uvicorn on `prefect.server.api.server:create_app`, UI off,
ephemeral flags as Prefect sets them) through this module, run as
`python -m flows.prefect_server --port P --parent PID`, which exits when its parent does:
the kernel sends it SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG, Linux), and a
watchdog thread that polls the parent pid covers other systems and the race at start.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PR_SET_PDEATHSIG = 1
EXIT_PORT_IN_USE = 3  # what uvicorn exits with when it cannot bind
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnedServer:
    """A Prefect API server in a child process that cannot outlive this one."""

    def __init__(self, log_file: Path | None = None) -> None:
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Spawn the server (returns at once; `wait_ready` waits for it)."""
        self.port = free_port()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flows.prefect_server", "--port", str(self.port), "--parent", str(os.getpid())],
                env={**os.environ, **_SERVER_ENV}, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]

    def wait_ready(self, timeout: float) -> None:
        """Block until /api/health answers; a port taken meanwhile gets a fresh one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            code = self.proc.poll()
            if code == EXIT_PORT_IN_USE:
                self.start()
                continue
            if code is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {code} at start"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- the child side
def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # uvicorn's graceful shutdown hung: leave anyway
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--parent", type=int, required=True)
    args = ap.parse_args(argv)
    _die_with_parent(args.parent)
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=args.port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    main()
