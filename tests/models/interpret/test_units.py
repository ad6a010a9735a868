"""The explain / select / test split: by patient, across activation deciles, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig, LLMConfig
from models.interpret.units import make_docs, sample_unit, spread_pick


def _unit(n_exp: int, n_ctrl: int, studies_per_patient: int) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    ids = [f"s{i}" for i in range(n_exp + n_ctrl)]
    texts = pd.Series([f"report {i}" for i in range(len(ids))], index=ids)
    rng = np.random.default_rng(3)
    subjects = pd.Series([f"p{j // studies_per_patient}" for j in rng.permutation(len(ids))], index=ids)
    rows = pd.DataFrame({"unit_id": 7, "study_id": ids, "role": ["exposed"] * n_exp + ["control"] * n_ctrl,
                         "value": list(np.linspace(10, 1, n_exp)) + [0.0] * n_ctrl})
    return rows, texts, subjects


def test_no_patient_on_two_sides_and_deciles_spread() -> None:
    rows, texts, subjects = _unit(400, 600, 3)
    docs = make_docs(texts, subjects)
    llm = LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", n_candidates=3)
    cfg = InterpretConfig(method="llm", llm=llm, n_top=100, n_control=100, n_score_top=50, n_score_control=50)
    s = sample_unit(rows.assign(doc=docs.row_index().get_indexer(rows["study_id"])), docs, cfg, 7, 0.5)
    sides = {"explain": np.r_[s.explain_top, s.explain_control], "select": np.r_[s.select_top, s.select_control],
             "test": np.r_[s.test_top, s.test_control]}
    pats = {k: set(docs.subjects[v]) for k, v in sides.items()}
    assert pats["explain"].isdisjoint(pats["test"]) and pats["explain"].isdisjoint(pats["select"])
    assert pats["select"].isdisjoint(pats["test"])
    assert s.test_top.size == 50 and s.test_control.size == 50 and s.select_top.size == 50
    assert np.bincount(s.test_top_decile, minlength=10).tolist() == [5] * 10  # even across deciles
    value = rows["value"].to_numpy()
    assert value[s.explain_top[0]] == value[s.explain_top].max()  # strongest first
    again = sample_unit(rows.sample(frac=1, random_state=1).assign(
        doc=lambda d: docs.row_index().get_indexer(d["study_id"])), docs, cfg, 7, 0.5)
    assert np.array_equal(again.test_top, s.test_top) and np.array_equal(again.explain_control, s.explain_control)


def test_keywords_have_no_selection_set_and_missing_texts_are_dropped() -> None:
    rows, texts, subjects = _unit(40, 60, 1)
    texts.iloc[:10] = None
    docs = make_docs(texts, subjects)
    s = sample_unit(rows.assign(doc=docs.row_index().get_indexer(rows["study_id"])), docs, InterpretConfig(), 7, 0.5)
    assert s.select_top.size == 0 and s.test_top.size + s.explain_top.size == 30


def test_spread_pick_takes_the_top_then_quantiles() -> None:
    rows = np.arange(100)
    pick = spread_pick(rows, 10, 0.5, 5, np.random.default_rng(0))
    assert pick[:5].tolist() == [0, 1, 2, 3, 4]
    assert sorted(((pick[5:] - 5) * 5) // 95) == [0, 1, 2, 3, 4]
