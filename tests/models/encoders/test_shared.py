"""One encoder per process and config: built once, reused by every task, one encode at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from data_contracts.config import CTRadiomicsConfig
from models.encoders.base import EncodeResult, ProgressFn
from models.encoders.registry import BUILDS, shared_encoder


class SlowEncoder:
    name, modality, dim = "slow", "report", 2

    def __init__(self) -> None:
        self.active = 0
        self.most_active = 0

    def identity(self) -> dict[str, object]:
        return {"name": self.name}

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        time.sleep(0.05)
        self.active -= 1
        return EncodeResult(np.zeros((len(items), 2), np.float32), np.arange(len(items)))


def test_built_once_per_config_and_calls_serialised() -> None:
    made: list[SlowEncoder] = []

    def factory(cfg: object) -> SlowEncoder:
        made.append(SlowEncoder())
        return made[-1]

    cfg = CTRadiomicsConfig(grid=(2, 2, 1))
    before = BUILDS["slow"]
    encs = [shared_encoder(cfg, factory) for _ in range(3)]
    assert len(made) == 1 and all(e is encs[0] for e in encs) and BUILDS["slow"] == before + 1
    threads = [threading.Thread(target=encs[0].encode, args=(["a", "b"],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made[0].most_active == 1  # never two encodes at once on one model
    shared_encoder(CTRadiomicsConfig(grid=(3, 3, 1)), factory)  # another config: another encoder
    assert len(made) == 2 and shared_encoder(cfg, factory) is encs[0]
