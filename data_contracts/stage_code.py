"""The code that builds an artifact, as a digest that enters the artifact's version.

A stage's code is the module that defines its build function plus every project module it
imports, transitively, within PACKAGES. `data_contracts` is left out: its table contracts
carry versions of their own and the stage configs are hashed as parameters, so a new config
field for one stage does not recompute every other stage. Each module is hashed as its token
stream without comments, blank lines and docstrings: rewording a comment reuses finished
work, changing a statistic recomputes what it feeds (a fix is never silently skipped).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import threading
import tokenize
from functools import cache
from pathlib import Path

PACKAGES = ("models", "tasks", "reports")
# Plumbing whose changes cannot change an artifact's content: the reuse rule itself,
# progress bars and run records.
EXCLUDED = frozenset({"tasks.stage", "tasks.progress", "tasks.lineage"})
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}


def _in_project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES and name not in EXCLUDED


@cache
def _source_path(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def code_tokens(source: str) -> list[str]:
    """The token strings of `source` that carry meaning: no comments, blank lines or
    docstrings (a string that is a whole statement); indentation kept as tokens."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in _SKIP]
    out: list[str] = []
    for i, t in enumerate(toks):
        starts = i == 0 or toks[i - 1].type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        ends = i + 1 < len(toks) and toks[i + 1].type in (tokenize.NEWLINE, tokenize.ENDMARKER)
        if t.type == tokenize.STRING and starts and ends:
            continue
        out.append(f"{t.type}:{t.string}")
    return out


# CPython 3.11.7 is not safe parsing in several threads at once ("SystemError: AST constructor
# recursion depth mismatch", fixed in 3.11.8); tasks of one flow (e.g. the SAE sweep) digest
# their code concurrently.
_PARSE_LOCK = threading.Lock()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules that module `name` (at `path`) imports."""
    with _PARSE_LOCK:
        tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from pkg import mod` names a submodule when one of that name exists
            found.update(f"{base}.{a.name}" for a in node.names if _source_path(f"{base}.{a.name}"))
    return {m for m in found if _in_project(m) and _source_path(m) is not None}


@cache
def module_digest(name: str) -> str:
    path = _source_path(name)
    if path is None:
        raise ModuleNotFoundError(f"no Python source for module {name}")
    return hashlib.sha256("\n".join(code_tokens(path.read_text())).encode()).hexdigest()


def stage_modules(module: str) -> list[str]:
    """`module` and the project modules it imports, transitively, sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        path = _source_path(m)
        if path is not None:
            todo.extend(_imports(m, path) - seen)
    return sorted(m for m in seen if _source_path(m) is not None)


@cache
def stage_code_digest(module: str) -> str:
    """Digest of the code of `module` and the project modules it imports."""
    h = hashlib.sha256()
    for m in stage_modules(module):
        h.update(f"{m}={module_digest(m)};".encode())
    return h.hexdigest()[:20]


def clear_caches() -> None:
    """Forget digests (a process that edits source files, e.g. a test, calls this)."""
    for f in (_source_path, module_digest, stage_code_digest):
        f.cache_clear()
