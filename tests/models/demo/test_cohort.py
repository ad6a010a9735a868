"""The demo cohort is the pipeline's ground truth: it must meet the input contracts, be
byte-for-byte reproducible, and carry the planted signal (in images, reports and MEDS
events) strongly enough to be rediscovered, while the confounder and null stay what they
claim to be."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from data_contracts.config import load_outcome_definitions
from data_contracts.schemas import MEDS_EVENTS, STUDIES
from models.demo.cohort import (
    DemoCohortConfig,
    DemoCohortPaths,
    generate_demo_cohort,
    n_studies,
)
from models.demo.volumes import LIVER_CENTER

SMALL = DemoCohortConfig(n_patients=120, seed=3, volume_shape=(32, 32, 24),
                         spacing_mm=(12.0, 12.0, 13.0))
KEYWORDS = {
    "cirrhosis": r"cirrho|chronic liver disease",
    "coronary_calcification": r"coronary (?:artery )?(?:calcification|atherosclerosis)|"
                              r"calcification of the coronary|calcified coronary",
    "spondylosis": r"spondyl|degenerative (?:changes|disc)",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> DemoCohortPaths:
    calls: list[int] = []
    paths = generate_demo_cohort(tmp_path_factory.mktemp("small"), SMALL, progress=calls.append)
    assert sum(calls) == n_studies(SMALL) == pq.read_metadata(paths.studies).num_rows
    return paths


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> DemoCohortPaths:
    """Tabular side only, big enough for the rates to be stable."""
    cfg = DemoCohortConfig(n_patients=3000, seed=11, write_images=False)
    return generate_demo_cohort(tmp_path_factory.mktemp("large"), cfg)


def _truth(paths: DemoCohortPaths) -> dict:
    return json.loads(paths.truth.read_text())


def _first_studies(paths: DemoCohortPaths) -> pd.DataFrame:
    """One row per patient: index study, age, sex and finding flags."""
    st = pd.read_parquet(paths.studies)
    ev = pd.read_parquet(paths.events)
    first = st.sort_values("study_time").groupby("subject_id").head(1).set_index("subject_id")
    birth = ev[ev["code"] == "MEDS_BIRTH"].set_index("subject_id")["time"]
    first["age"] = (first["study_time"] - birth.reindex(first.index)).dt.days / 365.25
    first["male"] = first.index.isin(ev.loc[ev["code"] == "GENDER//M", "subject_id"])
    for name, f in _truth(paths)["findings"].items():
        first[name] = first["study_id"].isin(set(f["study_ids"]))
    return first


def _incidence(paths: DemoCohortPaths, outcome: str, finding: str) -> tuple[float, float, float]:
    """(4-year incidence in carriers, in non-carriers, prior fraction) from MEDS events,
    excluding prior cases as the pipeline must."""
    first = _first_studies(paths)
    ev = pd.read_parquet(paths.events)
    defs = {o.id: o for o in load_outcome_definitions(paths.outcomes).outcomes}
    hit = ev[ev["code"].str.startswith(defs[outcome].codes)].groupby("subject_id")["time"].min()
    t = hit.reindex(first.index)
    prior = t.notna() & (t.dt.normalize() <= first["study_time"].dt.normalize())
    window = first["study_time"] + pd.Timedelta(days=365.25 * defs[outcome].window_years)
    event = (t.notna() & ~prior & (t <= window))[~prior]
    carrier = first.loc[~prior, finding]
    return float(event[carrier].mean()), float(event[~carrier].mean()), float(prior.mean())


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image)
    return img


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- contracts and files
def test_tables_meet_contracts(small: DemoCohortPaths) -> None:
    assert pq.read_schema(small.studies).remove_metadata().equals(STUDIES.schema)
    assert pq.read_schema(small.events).remove_metadata().equals(MEDS_EVENTS.schema)
    st = pd.read_parquet(small.studies)
    assert st["study_id"].is_unique and st["study_id"].str.fullmatch(r"S\d{6}").all()
    assert (st["image_path"] == "images/" + st["study_id"] + ".nii.gz").all()
    assert all((small.root / p).is_file() for p in st["image_path"])
    assert st["report_text"].str.startswith("EXAMINATION:").all()
    ev = pd.read_parquet(small.events)
    assert ev["time"].notna().all() and ev["code"].notna().all()
    per = ev.groupby("subject_id")["code"]
    assert (per.apply(lambda c: (c == "MEDS_BIRTH").sum()) == 1).all()
    assert (per.apply(lambda c: c.isin(["GENDER//F", "GENDER//M"]).sum()) == 1).all()
    assert set(st["subject_id"]) == set(ev["subject_id"])


def test_outcomes_yaml_and_truth_shape(small: DemoCohortPaths) -> None:
    defs = load_outcome_definitions(small.outcomes)
    assert [o.id for o in defs.outcomes] == ["liver_cancer", "heart_failure", "appendicitis"]
    assert all(o.window_years == 4 and o.exclude_prior for o in defs.outcomes)
    assert yaml.safe_load(small.outcomes.read_text())["outcomes"][0]["codes"] == ["ICD10CM//C22"]
    truth = _truth(small)
    assert {"finding": "cirrhosis", "outcome": "liver_cancer"} in truth["links"]
    assert truth["confounded"] == [{"finding": "spondylosis", "via": "age"}]
    ids = set(pd.read_parquet(small.studies)["study_id"])
    for f in truth["findings"].values():
        assert set(f["study_ids"]) <= ids and f["description"]


def test_no_events_after_death_and_events_sorted(small: DemoCohortPaths) -> None:
    ev = pd.read_parquet(small.events)
    assert ev.equals(ev.sort_values(["subject_id", "time", "code"], kind="stable"))
    death = ev[ev["code"] == "MEDS_DEATH"].set_index("subject_id")["time"]
    last = ev.groupby("subject_id")["time"].max()
    assert (last.reindex(death.index) == death).all()


def test_repeat_studies_carry_the_same_findings(small: DemoCohortPaths) -> None:
    st = pd.read_parquet(small.studies)
    truth = _truth(small)
    repeats = st.groupby("subject_id")["study_id"].apply(list)
    repeats = repeats[repeats.str.len() > 1]
    assert len(repeats) > 0
    for ids in repeats:
        sets = [{n for n, f in truth["findings"].items() if s in f["study_ids"]} for s in ids]
        assert sets[0] == sets[1]


def test_deterministic_for_a_seed(small: DemoCohortPaths, tmp_path: Path) -> None:
    again = generate_demo_cohort(tmp_path / "again", SMALL)
    assert _digest(again.root) == _digest(small.root)
    seed3 = generate_demo_cohort(tmp_path / "a", DemoCohortConfig(n_patients=30, seed=3,
                                                                  write_images=False))
    seed4 = generate_demo_cohort(tmp_path / "b", DemoCohortConfig(n_patients=30, seed=4,
                                                                  write_images=False))
    assert seed3.studies.read_bytes() != seed4.studies.read_bytes()


@pytest.mark.parametrize("bad", [
    {"n_patients": 0}, {"volume_shape": (4, 48, 32)}, {"spacing_mm": (1.0, 0.0, 1.0)},
    {"first_study": "2015-13-01"}, {"last_study": "2024-06-01"}, {"repeat_study_frac": 1.5},
    {"liver_cancer_4y": (0.25, -0.1)}, {"noise_sigma_hu": (15.0, 8.0)},
])
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        DemoCohortConfig(**bad)


# ---------------------------------------------------------------- images
def _probe(vol: np.ndarray, center: tuple[float, float, float], half: int = 1) -> np.ndarray:
    idx = [round(c * n / 2 + (n - 1) / 2) for c, n in zip(center, vol.shape, strict=True)]
    return vol[tuple(slice(i - half, i + half + 1) for i in idx)]


def test_images_are_ras_int16_hounsfield(small: DemoCohortPaths) -> None:
    st = pd.read_parquet(small.studies)
    for rel in st["image_path"][:10]:
        img = _load(small.root / rel)
        assert img.shape == SMALL.volume_shape and img.get_data_dtype() == np.int16
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        np.testing.assert_allclose(img.affine, np.diag([*SMALL.spacing_mm, 1.0]))
        v = np.asarray(img.dataobj)
        assert v.min() >= -1024 and 300 < v.max() < 3072
        assert (v == -1000).mean() > 0.2  # air around the body


def test_cirrhotic_liver_is_less_dense(small: DemoCohortPaths) -> None:
    st = pd.read_parquet(small.studies)
    findings = _truth(small)["findings"]
    cirr, cyst = set(findings["cirrhosis"]["study_ids"]), set(findings["hepatic_cyst"]["study_ids"])
    dens = {s: float(_probe(np.asarray(_load(small.root / p).dataobj), LIVER_CENTER).mean())
            for s, p in zip(st["study_id"], st["image_path"], strict=True) if s not in cyst}
    sick = [v for s, v in dens.items() if s in cirr]
    well = [v for s, v in dens.items() if s not in cirr]
    assert len(sick) >= 3
    assert 30 < np.mean(sick) < 50 < np.mean(well) < 70
    assert np.mean(well) - np.mean(sick) > 12


def test_coronary_calcification_is_bright_in_the_heart(small: DemoCohortPaths) -> None:
    st = pd.read_parquet(small.studies)
    cac = set(_truth(small)["findings"]["coronary_calcification"]["study_ids"])
    n_bright = {}
    for s, p in zip(st["study_id"], st["image_path"], strict=True):
        v = np.asarray(_load(small.root / p).dataobj)
        ny, nz = v.shape[1:]
        heart = v[:, ny // 2:, int(nz * 0.78):]  # anterior, top slices
        n_bright[s] = int((heart > 400).sum())
    assert all(n_bright[s] > 0 for s in cac)
    assert np.mean([n > 0 for s, n in n_bright.items() if s not in cac]) < 0.05


# ---------------------------------------------------------------- reports
def test_reports_mention_planted_findings_for_carriers(small: DemoCohortPaths) -> None:
    st = pd.read_parquet(small.studies).set_index("study_id")
    for name, pattern in KEYWORDS.items():
        carriers = _truth(small)["findings"][name]["study_ids"]
        text = st.loc[carriers, "report_text"]
        assert text.str.contains(pattern, flags=re.IGNORECASE).all(), name
    words = st["report_text"].str.count(r"\S+")
    assert words.min() >= 35 and words.max() <= 140 and 50 <= words.mean() <= 110


def test_negated_mentions_are_rare(large: DemoCohortPaths) -> None:
    st = pd.read_parquet(large.studies)
    neg = st["report_text"].str.contains(
        "No evidence of cirrhosis|No coronary artery calcification|No significant degenerative")
    assert 0.02 < neg.mean() <= 0.10
    assert st["report_text"].nunique() > 0.95 * len(st)


# ---------------------------------------------------------------- cohort statistics
def test_prevalences_roughly_as_designed(large: DemoCohortPaths) -> None:
    first = _first_studies(large)
    assert 59 < first["age"].mean() < 67 and first["age"].between(40, 90.01).all()
    assert 0.45 < first["male"].mean() < 0.55
    assert 0.05 < first["cirrhosis"].mean() < 0.11
    by_sex = first.groupby("male")["cirrhosis"].mean()
    assert by_sex[True] > by_sex[False]
    assert 0.07 < first["coronary_calcification"].mean() < 0.13
    for name in _truth(large)["incidental"]:
        assert 0.035 < first[name].mean() < 0.15, name
    st = pd.read_parquet(large.studies)
    assert 0.10 < st.duplicated("subject_id").sum() / len(first) < 0.20


def test_spondylosis_prevalence_rises_with_age(large: DemoCohortPaths) -> None:
    first = _first_studies(large)
    young = first.loc[first["age"] < 50, "spondylosis"].mean()
    old = first.loc[first["age"] > 75, "spondylosis"].mean()
    assert young < 0.06 and 0.3 < old < 0.5


def test_linked_outcomes_are_much_more_frequent_in_carriers(large: DemoCohortPaths) -> None:
    lc_yes, lc_no, lc_prior = _incidence(large, "liver_cancer", "cirrhosis")
    assert 0.15 < lc_yes < 0.35 and lc_no < 0.015 and 0.005 < lc_prior < 0.04
    hf_yes, hf_no, hf_prior = _incidence(large, "heart_failure", "coronary_calcification")
    assert 0.13 < hf_yes < 0.30 and 0.02 < hf_no < 0.06 and 0.01 < hf_prior < 0.05
    sp_yes, sp_no, _ = _incidence(large, "heart_failure", "spondylosis")
    assert hf_yes / hf_no > 2 * (sp_yes / sp_no)  # the direct link beats the confounder
    assert _incidence(large, "appendicitis", "cirrhosis")[1] < 0.03


def test_some_incident_events_fall_outside_the_window(large: DemoCohortPaths) -> None:
    first = _first_studies(large)
    ev = pd.read_parquet(large.events)
    hf = ev[ev["code"].str.startswith("ICD10CM//I50")].groupby("subject_id")["time"].min()
    gap_years = (hf - first["study_time"].reindex(hf.index)).dt.days / 365.25
    assert (gap_years < 0).any() and (gap_years > 4).any() and (gap_years.between(0, 4)).any()
    assert gap_years.max() <= 6.01
    last = ev.groupby("subject_id")["time"].max()
    early = last < pd.Timestamp(DemoCohortConfig().data_end) - pd.Timedelta(days=365)
    assert 0.05 < early.mean() < 0.5  # deaths and losses to follow-up
