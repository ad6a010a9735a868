"""Synthetic reports with planted findings and unit cohorts over them, for interpreter tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

FINDINGS = [
    "Cirrhotic liver morphology with esophageal varices.",
    "Coronary artery calcification is noted.",
    "Small right pleural effusion.",
    "Mild splenomegaly.",
    "Diffuse hepatic steatosis.",
    "Left renal cyst.",
]
NORMAL = [
    "No pleural effusion or pneumothorax.",
    "The liver is normal in size without focal lesion.",
    "No evidence of cirrhosis.",
    "Kidneys are unremarkable.",
    "Heart size is normal.",
    "No free fluid, however there is mild atelectasis.",
    "Bowel loops are unremarkable.",
]


def synthetic(n_reports: int, n_features: int, seed: int = 0) -> tuple[pd.Series, pd.DataFrame]:
    """Reports with a planted finding each; feature f's top reports carry finding f % 6."""
    rng = np.random.default_rng(seed)
    planted = rng.integers(0, len(FINDINGS), n_reports)
    texts = []
    for i in range(n_reports):
        body = list(rng.choice(NORMAL, 4, replace=False))
        if rng.random() < 0.8:
            body.insert(int(rng.integers(0, 4)), FINDINGS[planted[i]])
        texts.append("FINDINGS: " + " ".join(body) + f"\nIMPRESSION: case {i}.")
    ids = [f"s{i:05d}" for i in range(n_reports)]
    reports = pd.Series(texts, index=ids)
    rows = []
    for f in range(n_features):
        has = np.flatnonzero(planted == f % len(FINDINGS))
        exp = rng.permutation(has)[:100]
        ctrl = rng.permutation(np.flatnonzero(planted != f % len(FINDINGS)))[:300]
        for role, idx in (("exposed", exp), ("control", ctrl)):
            for r, i in enumerate(idx, start=1):
                rows.append((f, ids[i], role, float(10 - r / 50 if role == "exposed" else 0), r))
    cohorts = pd.DataFrame(rows, columns=["feature_id", "study_id", "role", "value", "rank"])
    cohorts["feature_id"] = cohorts["feature_id"].astype(np.int32)
    return reports, cohorts


