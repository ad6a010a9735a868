"""Entry points: interpret the units of one modality (features, or issue 14's families) with
the configured method and judge, and return INTERPRETATIONS rows.

Every feature is named from report text: a report feature from its own reports, an image
feature from the reports of the studies whose images activate it (`named_from` says so).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.config import InterpretConfig
from data_contracts.schemas import INTERPRETATIONS
from models.interpret.base import Explainer, Judge
from models.interpret.client import ChatClient
from models.interpret.driver import interpret_units
from models.interpret.keywords import KeywordExplainer, KeywordJudge, build_corpus
from models.interpret.llm import LLMInterpreter
from models.interpret.units import make_docs


def named_from(modality: str) -> str:
    if modality == "report":
        return "the feature's own report texts"
    return f"the report texts of the studies whose {modality} activates the feature (not the {modality} itself)"


def interpret_unit_cohorts(
    cohorts: pd.DataFrame,
    texts: pd.Series,
    cfg: InterpretConfig,
    modality: str,
    unit: str = "feature",
    subjects: pd.Series | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """INTERPRETATIONS rows for unit cohorts (unit_id, study_id, role, value). `texts`:
    study_id -> report text; `subjects`: study_id -> patient (the held-out split is by
    patient; None: each study its own patient); `cache_dir`: where LLM replies are cached (a
    local folder or an fsspec URL)."""
    return to_contract(_unit_rows(cohorts, texts, cfg, subjects, cache_dir, progress), modality, unit, cfg)


def _unit_rows(cohorts: pd.DataFrame, texts: pd.Series, cfg: InterpretConfig, subjects: pd.Series | None,
               cache_dir: str | Path | None, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    docs = make_docs(texts, subjects)
    corpus = build_corpus(list(docs.texts))
    with ExitStack() as stack:
        explainer: Explainer = KeywordExplainer(corpus, cfg)
        judge: Judge = KeywordJudge(corpus)
        llm_cfg = cfg.llm_in_use()
        if llm_cfg is not None:
            client = stack.enter_context(ChatClient(llm_cfg, cache_dir))
            llm = LLMInterpreter(client, llm_cfg, docs.texts)
            if cfg.method == "llm":
                explainer = llm
            if cfg.judge_kind() == "llm":
                judge = llm
        return interpret_units(cohorts, docs, cfg, explainer, judge, explain_top_share(cfg), progress)


def explain_top_share(cfg: InterpretConfig) -> float:
    """Share of the explainer's activating reports taken from the very top (the rest are
    drawn across activation quantiles); the held-out draws follow from the same seed."""
    llm_cfg = cfg.llm_in_use()
    return llm_cfg.top_share if llm_cfg is not None else 0.5


def unit_key(unit: str, feature_id: int) -> int:
    """Id of a unit inside one interpretation pass: feature f is f, family f is -(f + 1)
    (a family's id is its parent feature's); its seeded held-out sample follows from it."""
    return -int(feature_id) - 1 if unit == "family" else int(feature_id)


def interpret_features(
    cohorts: pd.DataFrame,
    texts: pd.Series,
    cfg: InterpretConfig,
    modality: str,
    subjects: pd.Series | None = None,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """INTERPRETATIONS rows for the units of a COHORTS table: its features and, when it has
    a `unit` column, its feature families. All units are named in one pass over one corpus,
    so a unit's shuffled-label baseline may be any other unit's label (a modality with a
    single family still gets one). A family's id is its parent feature's, so inside the pass
    family f is unit -(f + 1); its own seeded sample differs from its parent's."""
    missing = {"feature_id", "study_id", "role", "value"} - set(cohorts.columns)
    if missing:
        raise ValueError(f"cohorts is missing columns {sorted(missing)} (COHORTS contract)")
    fid = cohorts["feature_id"].to_numpy(np.int64)
    family = (cohorts["unit"] == "family").to_numpy() if "unit" in cohorts.columns else np.zeros(len(fid), bool)
    units = cohorts.drop(columns=["feature_id"]).assign(unit_id=np.where(family, -fid - 1, fid))
    rows = _unit_rows(units, texts, cfg, subjects, cache_dir)
    uid = rows["unit_id"].to_numpy(np.int64) if len(rows) else np.zeros(0, np.int64)
    rows = rows.assign(unit=np.where(uid < 0, "family", "feature"), unit_id=np.where(uid < 0, -uid - 1, uid))
    return to_contract(rows.sort_values(["unit", "unit_id"], kind="mergesort"), modality, None, cfg)


def to_contract(rows: pd.DataFrame, modality: str, unit: str | None, cfg: InterpretConfig) -> pd.DataFrame:
    """Columns in contract order with contract dtypes; `unit` names every row's unit (None:
    the rows carry a `unit` column)."""
    df = rows.rename(columns={"unit_id": "feature_id"}).copy()
    if unit is not None:
        df["unit"] = unit
    df["modality"], df["method"] = modality, cfg.method
    df["judge"], df["named_from"] = cfg.judge_kind(), named_from(modality)
    names = INTERPRETATIONS.schema.names
    out = df.reindex(columns=names)
    out["feature_id"] = out["feature_id"].astype(np.int32)
    for c in ("n_candidates", "n_train_top", "n_train_control", "n_heldout_top", "n_heldout_top_hits",
              "n_heldout_control", "n_heldout_control_hits"):
        out[c] = out[c].astype(np.int64)
    for c in ("heldout_balanced_accuracy", "ba_ci_low", "ba_ci_high", "precision", "recall", "auroc",
              "baseline_balanced_accuracy"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(np.float64)
    for c in ("explanation", "baseline_label", "flag"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.reset_index(drop=True)
