"""SAE sweep results and the rule that picks the SAE used downstream.

Rule (documented in SAESweepConfig): the run whose variant, N and K equal the base `sae`
config's, if the grid holds it (the seed's Matryoshka, N 8192, K 20 by default); otherwise
the run with the lowest held-out FVU (train FVU when nothing is held out), ties to fewer
latents, then smaller K, then grid order. The rule is explicit rather than "best FVU
overall" because FVU always improves with K and N, while interpretability does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from data_contracts.config import SAEConfig
from models.sae.metrics import HIST_LOW

METRICS = ("fvu", "mse", "l0", "dead_frac")


def sweep_row(run: str, cfg: SAEConfig, prefixes: Sequence[int], metrics: Mapping[str, Mapping[str, float]]
              ) -> dict[str, object]:
    """One fixed-column row of the sweep table for a trained run (`metrics`: split -> name -> value)."""
    held, train = metrics.get("heldout", {}), metrics.get("train", {})
    nan = float("nan")
    row: dict[str, object] = {"run": run, "variant": cfg.variant, "n_features": cfg.n_features, "k": cfg.k,
                              "prefixes": [int(p) for p in prefixes], "selected": False}
    for split, vals in (("heldout", held), ("train", train)):
        row |= {f"{split}_{m}": float(vals.get(m, nan)) for m in METRICS}
    src = held or train
    row["heldout_prefix_fvu"] = [float(src.get(f"fvu_prefix_{p}", nan)) for p in prefixes] if len(prefixes) > 1 else []
    row["heldout_freq_hist"] = [float(src.get(f"freq_log10_{b}", nan)) for b in range(HIST_LOW, 1)]
    row["steps"] = int(train.get("steps", 0))
    return row


def select_run(table: pd.DataFrame, base: SAEConfig) -> int:
    """Positional index of the selected run (see module docstring)."""
    if table.empty:
        raise ValueError("an SAE sweep needs at least one run")
    same = (table["variant"] == base.variant) & (table["n_features"] == base.n_features) & (table["k"] == base.k)
    if same.any():
        return int(same.to_numpy().nonzero()[0][0])
    fvu = table["heldout_fvu"].fillna(table["train_fvu"])
    order = pd.DataFrame({"fvu": fvu.to_numpy(), "n": table["n_features"].to_numpy(), "k": table["k"].to_numpy()})
    return int(order.sort_values(["fvu", "n", "k"], kind="stable").index[0])


def sweep_table(rows: Sequence[Mapping[str, object]], base: SAEConfig) -> tuple[pd.DataFrame, int]:
    table = pd.DataFrame(list(rows))
    chosen = select_run(table, base)
    table.loc[chosen, "selected"] = True
    return table, chosen
