"""The code of a stage enters its artifacts' versions (data_contracts/stage_code.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from data_contracts.stage_code import clear_caches, code_tokens, stage_code_digest, stage_modules
from data_contracts.store import ArtifactStore
from tasks.stage import run_stage

BUILD = '''"""A stage module written by the test."""
import pandas as pd

FACTOR = {factor}  # {comment}


def build(w):
    """Docstring {comment}."""
    w.write_table("data", pd.DataFrame({{"x": [FACTOR]}}))
'''


def test_tokens_ignore_comments_blank_lines_and_docstrings() -> None:
    a = code_tokens('"""doc"""\nx = 1  # one\n\n\ndef f():\n    """doc"""\n    return x\n')
    b = code_tokens('"""other doc"""\nx = 1\ndef f():\n    """changed"""\n    return x  # why\n')
    assert a == b
    assert a != code_tokens('x = 2\ndef f():\n    return x\n')
    # indentation is meaning: the same lines, one dedented, differ
    assert code_tokens("if x:\n    a()\n    b()\n") != code_tokens("if x:\n    a()\nb()\n")
    # a string that is part of an expression is code, not a docstring
    assert code_tokens('y = "a"\n') != code_tokens('y = "b"\n')


def test_association_stage_covers_its_statistics() -> None:
    mods = stage_modules("tasks.stats")
    for m in ("tasks.stats", "models.stats.association", "models.stats.logistic", "models.stats.exact",
              "models.stats.survival", "tasks.outcomes", "models.outcomes.population"):
        assert m in mods
    assert not any(m.startswith("data_contracts") for m in mods)
    assert "tasks.stage" not in mods
    assert "models.sae.train" not in mods  # not imported by the association stage


def _run(store: ArtifactStore, mod_dir: Path, factor: int, comment: str) -> str:
    (mod_dir / "stage_code_probe.py").write_text(BUILD.format(factor=factor, comment=comment))
    clear_caches()
    sys.modules.pop("stage_code_probe", None)
    importlib.invalidate_caches()
    mod = importlib.import_module("stage_code_probe")
    ref = run_stage(store, "probe", None, [], {"p": 1}, mod.build)
    assert store.manifest(ref)["code_digest"] == stage_code_digest("stage_code_probe")
    return ref.version


def test_changing_a_stages_code_changes_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    monkeypatch.syspath_prepend(str(mod_dir))
    store = ArtifactStore(tmp_path / "store")
    try:
        v1 = _run(store, mod_dir, 1, "first")
        assert _run(store, mod_dir, 1, "reworded") == v1  # comments and docstrings: reused
        v2 = _run(store, mod_dir, 2, "first")
        assert v2 != v1
        assert store.read_table(store.lookup("probe", v2))["x"].tolist() == [2]  # type: ignore[arg-type]
    finally:
        sys.modules.pop("stage_code_probe", None)
        clear_caches()


def test_dependency_change_reaches_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    import data_contracts.stage_code as sc

    before, ingest = stage_code_digest("tasks.stats"), stage_code_digest("tasks.ingest")
    real = sc.module_digest
    monkeypatch.setattr(sc, "module_digest",
                        lambda m: "changed" if m == "models.stats.logistic" else real(m))
    sc.stage_code_digest.cache_clear()
    try:
        assert sc.stage_code_digest("tasks.stats") != before
        assert sc.stage_code_digest("tasks.ingest") == ingest  # ingest does not use the statistics
    finally:
        sc.stage_code_digest.cache_clear()
