"""The demo's label check: the best-matching feature of each planted finding must carry a
label naming it, a high held-out score, and a shuffled baseline near chance."""

from __future__ import annotations

import pandas as pd

from models.demo.check import label_check
from models.demo.reports import FINDING_NAMES
from tasks.demo import labels_passed


def _case(label: str, ba: float, baseline: float | None) -> pd.DataFrame:
    truth = {"findings": {"cirrhosis": {"study_ids": ["a", "b", "c"]}, "coronary_calcification": {"study_ids": ["d"]},
                          "spondylosis": {"study_ids": ["e"]}}}
    exposed = pd.DataFrame({"feature_id": [1, 1, 1, 2, 3, 4], "study_id": ["a", "b", "x", "d", "e", "c"]})
    interp = pd.DataFrame({"feature_id": [1, 2, 3, 4], "label": [label, "coronary artery calcification",
                                                                   "degenerative changes", "renal cyst"],
                           "heldout_balanced_accuracy": [ba, 0.95, 0.92, 0.99],
                           "ba_ci_low": [0.8, 0.9, 0.85, 0.95],
                           "baseline_balanced_accuracy": [baseline, 0.5, 0.45, 0.5],
                           "baseline_label": ["renal cyst"] * 4})
    return label_check(truth, {"report": exposed}, {"report": interp}, FINDING_NAMES)


def test_label_check_passes_named_well_scored_labels() -> None:
    t = _case("cirrhotic liver morphology; splenomegaly", 0.93, 0.52)
    assert t.set_index("finding").loc["cirrhosis", "feature_id"] == 1  # Jaccard 2/4 beats feature 4's 1/3
    assert t["passed"].all() and labels_passed(t)


def test_label_check_fails_wrong_name_or_baseline_far_from_chance_and_reports_low_scores() -> None:
    for label, base in (("renal cyst", 0.5), ("cirrhotic liver", 0.9), ("cirrhotic liver", None)):
        t = _case(label, 0.95, base)
        assert not t.set_index("finding").loc["cirrhosis", "passed"] and not labels_passed(t)
    low = _case("cirrhotic liver", 0.85, 0.5).set_index("finding").loc["cirrhosis"]
    assert low["passed"] and not low["ba_at_least_min"] and low["heldout_ba"] == 0.85
