"""Sweep expansion and the documented selection rule."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from data_contracts.config import SAEConfig, SAESweepConfig
from data_contracts.schemas import SAE_SWEEP
from data_contracts.validate import conform_table
from models.sae.sweep import sweep_row, sweep_table


def _row(variant: str, n: int, k: int, fvu: float) -> dict[str, object]:
    cfg = SAEConfig(variant=variant, n_features=n, k=k)  # type: ignore[arg-type]
    metrics = {"heldout": {"fvu": fvu, "l0": float(k)}, "train": {"fvu": fvu, "steps": 3.0}}
    return sweep_row(f"{variant}-{n}-{k}", cfg, (n,), metrics)


def test_expand_is_the_full_grid() -> None:
    base = SAEConfig(lr=5e-4)
    runs = SAESweepConfig(variants=("topk", "matryoshka_topk"), n_features=(1024, 8192), k=(10, 20)).expand(base)
    assert len(runs) == 8 and {r.lr for r in runs} == {5e-4}
    assert {(r.variant, r.n_features, r.k) for r in runs} >= {("topk", 1024, 10), ("matryoshka_topk", 8192, 20)}
    with pytest.raises(ValidationError):
        SAESweepConfig(n_features=(16,), k=(20,)).expand(SAEConfig(n_features=64, k=8))


def test_selection_prefers_the_base_config_then_lowest_fvu() -> None:
    rows = [_row("topk", 64, 8, 0.1), _row("matryoshka_topk", 64, 8, 0.3), _row("topk", 32, 8, 0.1)]
    table, chosen = sweep_table(rows, SAEConfig(variant="matryoshka_topk", n_features=64, k=8))
    assert chosen == 1 and table["selected"].tolist() == [False, True, False]
    _, chosen = sweep_table(rows, SAEConfig(variant="batchtopk", n_features=64, k=8))
    assert chosen == 2  # lowest FVU, tie broken toward fewer latents
    conform_table(table, SAE_SWEEP, "sweep")  # fixed columns fit the contract
    assert isinstance(table, pd.DataFrame) and table.loc[0, "steps"] == 3
