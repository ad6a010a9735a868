"""The study_split artifact is the one population association and survival analyse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_contracts.config import AssociationConfig, SurvivalConfig
from data_contracts.errors import ContractError
from data_contracts.schemas import COHORTS, EMBEDDINGS, FEATURE_STATS, OUTCOME_LABELS, Contract
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.outcomes.split import study_splits
from tasks.outcomes import study_split_fn
from tasks.stats import associate_fn, survival_fn

N = 700


def _artifact(store: ArtifactStore, kind: str, version: str, df: pd.DataFrame, contract: Contract) -> ArtifactRef:
    with store.writer(kind, version, contract=contract.key, inputs=[], params={}) as (w, out):
        w.write_table("data", df, contract)
    return out[0]


def _labels(rng: np.random.Generator, feature: np.ndarray) -> pd.DataFrame:
    t_event = rng.exponential(np.where(feature, 1500.0, 9000.0))
    t_end = rng.uniform(400, 1461, N)
    return pd.DataFrame({
        "study_id": [f"st{i:04d}" for i in range(N)], "subject_id": np.arange(N) // 2, "outcome_id": "o",
        "index_time": pd.Timestamp("2020-01-01"), "prior": False, "eligible": rng.uniform(size=N) < 0.95,
        "event": t_event <= t_end, "time_days": np.minimum(t_event, t_end), "complete_followup": t_event <= t_end,
        "age_years": rng.normal(60, 8, N), "sex": np.where(rng.uniform(size=N) < 0.5, "M", "F"), "flag": None})


def _modality(store: ArtifactStore, name: str, ids: np.ndarray, exposed: list[np.ndarray]
              ) -> tuple[ArtifactRef, ArtifactRef, ArtifactRef]:
    """embeddings (the encoded studies), feature_stats and cohorts of one modality: a
    feature per cohort in `exposed`, and a family (id 0) whose cohort is feature 0's."""
    emb = _artifact(store, "embeddings", name, pd.DataFrame({"study_id": ids, "embedding": [[0.0]] * len(ids)}),
                    EMBEDDINGS)
    units = [("feature", f, s) for f, s in enumerate(exposed)] + [("family", 0, exposed[0])]
    coh = pd.concat([pd.DataFrame({"unit": u, "feature_id": f, "study_id": s, "role": "exposed", "value": 1.0,
                                   "rank": np.arange(1, len(s) + 1)}) for u, f, s in units])
    sizes = [len(s) for _, _, s in units]
    fs = pd.DataFrame({"unit": [u for u, _, _ in units], "feature_id": [f for _, f, _ in units],
                       "n_studies": len(ids), "n_active": sizes, "frac_active": np.divide(sizes, len(ids)),
                       "cohort_size": sizes, "testable": True})
    return emb, _artifact(store, "feature_stats", name, fs, FEATURE_STATS), _artifact(store, "cohorts", name, coh,
                                                                                      COHORTS)


def test_association_and_survival_analyse_the_same_studies(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    feature, noise = rng.uniform(size=N) < 0.3, rng.uniform(size=N) < 0.3
    quarantined = rng.uniform(size=N) < 0.2  # the image encoder failed on these
    store = ArtifactStore(tmp_path / "store")
    labels = _labels(rng, feature)
    lab = _artifact(store, "outcome_labels", "v", labels, OUTCOME_LABELS)
    ids = labels["study_id"].to_numpy()
    ok = ~quarantined
    image = _modality(store, "image", ids[ok], [ids[feature & ok], ids[noise & ok]])
    report = _modality(store, "report", ids, [ids[feature], ids[noise]])
    # Every event-free study here is censored before the window's end: the default
    # binary_controls would leave them all out of the 2x2 (survival keeps them censored).
    acfg = AssociationConfig(min_exposed_cases=1, split_seed=5, binary_controls="all")
    embs = {"image": image[0], "report": report[0]}
    split = study_split_fn(store, lab, embs, acfg)
    assoc = associate_fn(store, {"image": image[1:], "report": report[1:]}, lab, split, acfg)
    outcomes = tmp_path / "outcomes.yaml"
    outcomes.write_text("outcomes:\n  - {id: o, name: O, codes: ['X'], window_years: 4}\n")
    cohorts = {"image": image[2], "report": report[2]}
    surv = survival_fn(store, lab, assoc, split, cohorts, outcomes, SurvivalConfig())
    for ref in (assoc, surv):
        assert split.to_dict() in store.manifest(ref)["inputs"]

    table = store.read_table(split)
    assert (table.groupby("study_id")["split"].nunique() == 1).all()
    per_study = table.drop_duplicates("study_id").set_index("study_id")["split"].reindex(ids).to_numpy()
    np.testing.assert_array_equal(per_study, study_splits(labels, ids, acfg.split_frac, acfg.split_seed))
    enc = table.pivot(index="study_id", columns="modality", values="encoded").reindex(ids)
    np.testing.assert_array_equal(enc["image"].to_numpy(bool), ok)

    s = store.read_table(surv)
    a = store.read_table(assoc).set_index(["modality", "unit", "feature_id", "outcome_id", "split"])
    assert {"image", "report"} <= set(s["modality"]) and set(s["split"]) == {"discovery", "validation"}
    # the family has feature 0's cohort: it ranks beside it, first (families win exact ties)
    disc = a.xs(("report", "o", "discovery"), level=("modality", "outcome_id", "split"))
    assert disc.loc[("family", 0), "rank"] == 1 and disc.loc[("feature", 0), "rank"] == 2
    assert disc["n_tested"].iloc[0] == 3  # two features and the family: all counted
    fam = s[s["unit"] == "family"].set_index(["modality", "split"])
    feat = s[(s["unit"] == "feature") & (s["feature_id"] == 0)].set_index(["modality", "split"])
    assert len(fam) == 4 and np.allclose(fam["hazard_ratio"], feat.loc[fam.index, "hazard_ratio"], equal_nan=True)
    for r in s.itertuples():
        x = a.loc[(r.modality, r.unit, r.feature_id, r.outcome_id, r.split)]
        assert (r.n_exposed, r.n) == (x.n_exposed, x.n_exposed + x.n_unexposed)
        assert (r.n_exposed_events, r.n_events) == (x.n_exposed_cases, x.n_exposed_cases + x.n_unexposed_cases)
        rows = labels["eligible"].to_numpy() & (per_study == r.split) & enc[r.modality].to_numpy(bool)
        assert r.n == rows.sum()

    other = study_split_fn(store, lab, embs, acfg.model_copy(update={"split_seed": 6}))
    with pytest.raises(ContractError, match="study_split"):
        survival_fn(store, lab, assoc, other, cohorts, outcomes, SurvivalConfig())


def _many_labels(seed: int) -> pd.DataFrame:
    """Labels of 3 outcomes x 300 studies, rows shuffled (any order must read the same)."""
    rng = np.random.default_rng(seed)
    frames = []
    for o in ("b", "a", "c"):
        df = _labels(rng, rng.uniform(size=N) < 0.3).assign(outcome_id=o)
        frames.append(df.iloc[:300].assign(subject_id=np.arange(300) // 3))
    lab = pd.concat(frames, ignore_index=True)
    lab.loc[lab.index[::7], "sex"] = None
    lab.loc[lab.index[::11], "time_days"] = np.nan
    lab["competing_event"] = ~lab["event"] & (lab.index % 5 == 0)
    return lab.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_parts(w: ArtifactWriter, parts: Iterator[pd.DataFrame]) -> None:
    with w.table_writer("data", OUTCOME_LABELS) as write:
        for part in parts:
            assert len(part) == 300  # whole frames of at least 250 rows
            write(part)


def test_labels_read_in_batches_equal_the_whole_table(tmp_path: Path) -> None:
    from models.outcomes.population import study_population
    from models.stats.association import outcome_matrices
    from tasks import outcomes as out_mod

    labels = _many_labels(3)
    store = ArtifactStore(tmp_path / "store")
    parts = out_mod.coalesce((labels.iloc[i:i + 100] for i in range(0, len(labels), 100)), 250)
    with store.writer("outcome_labels", "v", contract=OUTCOME_LABELS.key, inputs=[], params={}) as (w, refs):
        write_parts(w, parts)
    ref = refs[0]
    assert pq.ParquetFile(out_mod.data_path(store, ref)).num_row_groups == 3
    want = outcome_matrices(labels)
    got = out_mod.read_outcome_matrices(store, ref)
    assert got.competing.any()
    assert got.complete is not None and not got.complete.all()
    for name in ("study_ids", "subject_ids", "Y", "M", "T", "age", "male", "competing", "complete"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.outcome_ids == want.outcome_ids == ["a", "b", "c"]
    subset = out_mod.label_population(store, ref)
    assert len(subset) < len(labels)
    enc = {"image": labels["study_id"].unique()[::2]}
    pd.testing.assert_frame_equal(study_population(subset, enc, 0.5, 4), study_population(labels, enc, 0.5, 4))
    elig = labels[labels["eligible"]].assign(short=lambda d: ~d["event"] & ~d["complete_followup"])
    want_counts = elig.groupby("outcome_id").agg(n_eligible=("study_id", "size"), n_cases=("event", "sum"),
                                                 n_excluded_followup=("short", "sum"))
    assert want_counts["n_excluded_followup"].min() > 0
    counts = out_mod.outcome_counts(store, ref, "complete_followup")
    pd.testing.assert_frame_equal(counts.sort_index(), want_counts.sort_index(), check_dtype=False)
    assert (out_mod.outcome_counts(store, ref)["n_excluded_followup"] == 0).all()  # binary_controls 'all'


def test_exposed_masks_and_encoded_flags_equal_plain_membership(tmp_path: Path) -> None:
    """The hashed lookups (np.isin on string ids is quadratic) give np.isin's answer:
    survival's exposure per hit feature and study_split's `encoded` flag."""
    from models.outcomes.population import study_population
    from tasks.stats import _exposed_masks

    rng = np.random.default_rng(2)
    ids = np.array([f"st{i:04d}" for i in rng.permutation(N)], dtype=object)
    exposed = [ids[rng.uniform(size=N) < p] for p in (0.1, 0.3, 0.0)]
    exposed[1] = np.concatenate([exposed[1], ["not-a-labelled-study"]])
    store = ArtifactStore(tmp_path / "store")
    _, _, coh = _modality(store, "image", ids, exposed)
    hits = pd.DataFrame({"unit": ["feature"] * 4 + ["family"], "feature_id": [0, 1, 2, 5, 0]})
    masks = _exposed_masks(store, coh, ids, hits)
    for f in (0, 1, 2):
        np.testing.assert_array_equal(masks[("feature", f)], np.isin(ids, exposed[f]))
    np.testing.assert_array_equal(masks[("family", 0)], np.isin(ids, exposed[0]))
    assert masks[("feature", 0)].any() and not masks[("feature", 2)].any() and not masks[("feature", 5)].any()
    labels = _labels(rng, rng.uniform(size=N) < 0.3)
    enc = labels["study_id"].to_numpy(object)[::3]
    pop = study_population(labels, {"image": enc}, 0.5, 0)
    np.testing.assert_array_equal(pop["encoded"].to_numpy(bool), np.isin(pop["study_id"].to_numpy(), enc))


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 1000])
def test_label_studies_first_rows_equal_pandas(tmp_path: Path, batch_rows: int) -> None:
    """Each study's first row, whether outcome blocks repeat the first block's order (the
    skipped comparison), reorder it, add studies, or come back interleaved."""
    from tasks import outcomes as out_mod

    def block(outcome: str, ids: list[str]) -> pd.DataFrame:
        rng = np.random.default_rng(len(ids) + ord(outcome[-1]))
        return pd.DataFrame({"study_id": ids, "subject_id": [int(i[1:]) // 2 for i in ids], "outcome_id": outcome,
                             "eligible": rng.uniform(size=len(ids)) < 0.7, "event": rng.uniform(size=len(ids)) < 0.3,
                             "age_years": rng.normal(60, 8, len(ids)), "sex": rng.choice(["F", "M", None], len(ids))})

    base = [f"s{i}" for i in range(6)]
    labels = pd.concat([block("a", base), block("b", base), block("c", [*base[::-1], "s7"]),
                        block("d", [*base, "s7"]), block("a", ["s8", "s2"]), block("e", base[:3])],
                       ignore_index=True)
    path = tmp_path / "labels.parquet"
    labels.to_parquet(path, index=False)
    got, outcomes = out_mod.label_studies(path, batch_rows=batch_rows)
    want = labels.drop_duplicates("study_id").reset_index(drop=True)
    assert got["sex"].isna().tolist() == want["sex"].isna().tolist()
    pd.testing.assert_frame_equal(got.fillna({"sex": "-"}),
                                  want.fillna({"sex": "-"}).astype({"study_id": object, "outcome_id": object}))
    assert outcomes == ["a", "b", "c", "d", "e"]
    assert got["study_id"].tolist() == [*base, "s7", "s8"]
