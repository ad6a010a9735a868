"""The interpret task over a store: LLM replies cached under the store root (a rerun sends
nothing even when the artifact is gone), patients from the studies table, the contract."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from data_contracts.config import InterpretConfig, LLMConfig
from data_contracts.schemas import COHORTS, INTERPRETATIONS, STUDIES
from data_contracts.store import ArtifactRef, ArtifactStore
from tasks.interpret import LLM_CACHE, interpret_fn
from tests.models.interpret.fake_openai import FakeOpenAI, Response, chat
from tests.models.interpret.synthetic import synthetic


def _table(store: ArtifactStore, kind: str, df: pd.DataFrame, contract: Any) -> ArtifactRef:
    with store.writer(kind, kind + "-v", contract=contract.key, inputs=[], params={}) as (w, out):
        w.write_table("data", df, contract)
    return out[0]


def _script(body: dict[str, Any]) -> Response:
    user = body["messages"][-1]["content"]
    if user.startswith("Finding:"):
        return chat("Yes" if "pleural effusion" in user.split("Report:", 1)[1].lower() else "No")
    return chat('{"label": "pleural effusion", "explanation": "Fluid."}')


def test_llm_task_caches_replies_in_the_store(tmp_path: Path) -> None:
    reports, cohorts = synthetic(240, 2, seed=5)
    studies = pd.DataFrame({"study_id": reports.index, "subject_id": range(len(reports)),
                            "study_time": pd.Timestamp("2020-01-01"), "report_text": reports.to_numpy()})
    store = ArtifactStore(tmp_path / "store")
    s_ref = _table(store, "studies", studies, STUDIES)
    c_ref = _table(store, "cohorts", cohorts.assign(unit="feature"), COHORTS)
    with FakeOpenAI(_script) as srv:
        llm = LLMConfig(base_url=srv.url, model="fake", n_candidates=1, backoff_s=0)
        cfg = InterpretConfig(method="llm", llm=llm, n_score_top=20, n_score_control=20)
        ref = interpret_fn(store, s_ref, c_ref, "image", cfg)
        n_sent = len(srv.requests)
        shutil.rmtree(ref.path)
        again = interpret_fn(store, s_ref, c_ref, "image", cfg)
        assert len(srv.requests) == n_sent > 0
    out = store.read_table(again)
    assert list(out.columns) == INTERPRETATIONS.schema.names
    assert (out["label"] == "pleural effusion").all() and (out["modality"] == "image").all()
    assert out["named_from"].str.contains("report texts of the studies whose image").all()
    assert any((tmp_path / "store" / LLM_CACHE).rglob("*.json"))
    keyword = interpret_fn(store, s_ref, c_ref, "image", InterpretConfig())
    assert keyword.version != ref.version and store.read_table(keyword)["method"].eq("keywords").all()
