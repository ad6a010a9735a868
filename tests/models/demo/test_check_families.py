"""The demo self-check per unit: the best feature and the best family (a feature family,
or a feature in no family) of each planted finding, each looked up in the ranking, on
constructed tables."""

from __future__ import annotations

import pandas as pd

from models.demo.check import check_passed, demo_check

TRUTH = {"findings": {"cirrhosis": {"study_ids": ["a", "b", "c", "d"]}, "spondylosis": {"study_ids": ["x", "y"]}},
         "links": [{"finding": "cirrhosis", "outcome": "liver"}], "confounded": [{"finding": "spondylosis"}]}


def _assoc(rows: list[tuple[str, int, str, int | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"modality": "report", "unit": u, "feature_id": f, "outcome_id": o, "split": "discovery",
                          "rank": pd.NA if r is None else r, "n_ranked": 2, "odds_ratio": 2.0, "adj_odds_ratio": 2.0,
                          "q_value": 0.01, "score_q": 0.01, "replicated": True} for u, f, o, r in rows])


def _exposed(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["unit", "feature_id", "study_id"])


FAMILIES = pd.DataFrame({"family_id": [1, 5], "members": [[1, 2], [5, 6]]})


def test_best_feature_and_best_family_are_both_reported() -> None:
    exposed = _exposed([("feature", 1, s) for s in "abz"] + [("family", 1, s) for s in "abcd"]
                       + [("feature", 5, "x"), ("family", 5, "x")])
    assoc = _assoc([("feature", 1, "liver", None), ("family", 1, "liver", 1), ("feature", 5, "liver", None),
                    ("family", 5, "liver", 3)])
    table = demo_check(TRUTH, {"report": exposed}, assoc, families={"report": FAMILIES})
    link = table[table["role"] == "planted_link"].set_index("best")
    assert link.loc["feature", "jaccard"] == 0.4 and pd.isna(link.loc["feature", "rank"])
    assert link.loc["family", "jaccard"] == 1.0 and link.loc["family", "rank"] == 1
    assert link.loc["family", "family_size"] == 2 and link.loc["family", "unit"] == "family"
    conf = table[table["role"] == "age_confounded"].set_index("best")
    assert conf.loc["feature", "passed"] and not conf.loc["family", "passed"]  # the family ranks 3
    assert not check_passed(table)
    calm = assoc.assign(rank=assoc["rank"].where(assoc["feature_id"] != 5, pd.NA))
    assert check_passed(demo_check(TRUTH, {"report": exposed}, calm, families={"report": FAMILIES}))


def test_a_feature_in_no_family_is_its_own_family() -> None:
    """The finding's best match is feature 7, in no family: it is the best family too (of
    one); member feature 2 is never a family, however well it matches."""
    exposed = _exposed([("feature", 7, s) for s in "abc"] + [("feature", 2, s) for s in "abcd"]
                       + [("family", 1, s) for s in "axyz"])
    assoc = _assoc([("feature", 7, "liver", 1), ("feature", 2, "liver", None), ("family", 1, "liver", None)])
    table = demo_check(TRUTH, {"report": exposed}, assoc, families={"report": FAMILIES})
    link = table[table["role"] == "planted_link"].set_index("best")
    assert link.loc["feature", "feature_id"] == 2 and link.loc["feature", "jaccard"] == 1.0
    fam = link.loc["family"]
    assert (fam["unit"], fam["feature_id"], fam["family_size"], fam["jaccard"], fam["rank"]) == ("feature", 7, 1,
                                                                                               0.75, 1)
