"""Temporary files of atomic writes, and sweeping those a killed process left behind.

Every temporary name written into the store carries its writer as `~<pid>@<host>~`. A
later run removes the ones whose writer is gone: same host and that process no longer
running. Temporary files of writers on other hosts (a shared store on a cluster) are left
alone: their liveness cannot be checked from here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

_OWNER = re.compile(r"~(\d+)@([^~/]+)~")


@lru_cache(maxsize=1)
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.\-_]", "_", socket.gethostname()) or "host"


def owner_tag() -> str:
    """`~pid@host~` of this process, for temporary names."""
    return f"~{os.getpid()}@{_host()}~"


def process_running(pid: int) -> bool:
    """A process of this host with this pid exists and has not exited (zombies have)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: its files are abandoned
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def abandoned(name: str) -> bool:
    """The temporary `name` was written by a process of this host that is gone."""
    m = _OWNER.search(name)
    return m is not None and m.group(2) == _host() and not process_running(int(m.group(1)))


def sweep(folders: Iterable[Path]) -> list[Path]:
    """Remove abandoned hidden temporaries (files or folders) directly inside `folders`."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") and abandoned(e.name):
                p = Path(e.path)
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed
