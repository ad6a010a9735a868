"""SAE checkpoint: a save/load round trip restores the exact encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_contracts.config import SAEConfig
from models.sae.checkpoint import checkpoint_metrics, load_sae, save_sae
from models.sae.encode import encode
from models.sae.train import train_sae


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 6)) * 4 + 2).astype(np.float32)
    cfg = SAEConfig(variant="matryoshka_batchtopk", n_features=24, k=3, prefixes=(6, 24), epochs=3,
                    batch_size=32, device="cpu")
    res = train_sae(x, cfg)
    save_sae(res.model, cfg, tmp_path, res.metrics)
    model, cfg2 = load_sae(tmp_path)
    assert cfg2 == cfg and model.prefixes == (6, 24) and model.selection == "batchtopk"
    assert float(model.threshold) == float(res.model.threshold) > 0  # inference threshold kept
    assert float(model.x_scale[0]) == float(res.model.x_scale[0]) != 1.0  # normalisation kept
    for (v1, i1), (v2, i2) in [(encode(res.model, x), encode(model, x))]:
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(i1, i2)
    assert checkpoint_metrics(tmp_path) == json.loads(json.dumps(res.metrics))
    meta = json.loads((tmp_path / "sae_config.json").read_text())
    assert meta["d_in"] == 6 and "threshold" in meta["inference"]
