"""A demo-like cohort with the corpus's defects mixed in, run end to end by the CLI: the run
completes, each defect is a quarantine row or a flag, and the full log carries no planted
study or patient id and no report text (PHI hygiene: counts and versions only)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import write_tiny_config

PLANTED_TEXT = "Quixotewell Zanzibar"  # a name in every report: must never reach the log


def _dirty_copy(cohort: Path, d: Path) -> tuple[Path, pd.DataFrame]:
    """The tiny cohort with identifiers nobody would print by accident, and defects."""
    shutil.copytree(cohort, d)
    st = pd.read_parquet(d / "studies.parquet")
    ev = pd.read_parquet(d / "events.parquet")
    rng = np.random.default_rng(4)
    new_sid = {s: f"ZQ{rng.integers(16**9):09x}" for s in st["study_id"]}
    new_subject = {s: 8_400_000_000 + k for k, s in enumerate(sorted(ev["subject_id"].unique()))}
    for old, new in new_sid.items():  # image files named after the study, as exports often are
        (d / "images" / f"{old}.nii.gz").rename(d / "images" / f"{new}.nii.gz")
    st["study_id"] = st["study_id"].map(new_sid)
    st["image_path"] = "images/" + st["study_id"] + ".nii.gz"
    st["subject_id"] = st["subject_id"].map(new_subject)
    ev["subject_id"] = ev["subject_id"].map(new_subject)
    st["report_text"] = f"Patient {PLANTED_TEXT} seen. " + st["report_text"]
    st.loc[1, "report_text"] = "  "  # empty report -> report embeddings quarantine
    (d / st.loc[2, "image_path"]).write_bytes(b"not a nifti")  # unreadable -> image quarantine
    st.loc[3, "image_path"] = "../elsewhere.nii.gz"  # escapes the folder -> studies quarantine
    st.loc[4, "study_time"] = pd.Timestamp("2091-01-01")  # future -> flagged, not eligible
    st = pd.concat([st, st.iloc[[5]]], ignore_index=True)  # duplicate study id -> both quarantined
    ev = pd.concat([ev, ev.iloc[[10]]], ignore_index=True)  # duplicate MEDS row: harmless, kept
    before = pd.DataFrame({"subject_id": [st.loc[6, "subject_id"]], "time": [pd.Timestamp("1900-01-01")],
                           "code": ["ICD10CM//I10"], "numeric_value": [np.nan]})
    ev = pd.concat([ev, before.astype(ev.dtypes.to_dict())], ignore_index=True)  # before birth
    st.to_parquet(d / "studies.parquet")
    ev.to_parquet(d / "events.parquet")
    defs = yaml.safe_load((d / "outcomes.yaml").read_text())
    defs["outcomes"].append({"id": "never_coded", "name": "Never coded", "codes": ["ICD10CM//Z99.99"]})
    (d / "outcomes.yaml").write_text(yaml.safe_dump(defs))
    return d, st


@pytest.mark.prefect
@pytest.mark.slow  # ~60 s: a whole CLI run; the corpus cases themselves run by default
def test_dirty_cohort_runs_flags_defects_and_logs_no_phi(tiny_cohort: Path, tmp_path: Path) -> None:
    d, st = _dirty_copy(tiny_cohort, tmp_path / "input")
    config = write_tiny_config(d, tmp_path / "run")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home")}
    env.pop("PREFECT_API_URL", None)
    res = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)], env=env, capture_output=True,
                         text=True, timeout=900)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]

    store = tmp_path / "run" / "store"
    arts = {p.parent.parent.name: p.parent for p in (store / "artifacts").glob("*/[!.]*/manifest.json")}
    q = {k: pd.read_parquet(v / "quarantine.parquet") for k, v in arts.items() if (v / "quarantine.parquet").exists()}
    assert set(q["studies"]["reason"]) >= {"duplicate study_id: the id must be unique"}
    assert q["studies"]["reason"].str.contains("leaves the studies file's folder").sum() == 1
    assert set(q["events"]["reason"]) == {"dated before the patient's birth (MEDS_BIRTH)"}
    labels = pd.read_parquet(arts["outcome_labels"] / "data.parquet")
    assert labels.loc[labels["study_id"] == st.loc[4, "study_id"], "flag"].str.contains("end of the data").all()
    assoc = pd.read_parquet(arts["associations"] / "data.parquet")
    never = assoc[assoc["outcome_id"] == "never_coded"]
    assert len(never) and never["flag"].str.contains("outcome has no cases").all()
    assert (tmp_path / "run" / "report" / "index.html").is_file()

    planted = [*st["study_id"], *map(str, st["subject_id"].unique()), PLANTED_TEXT]
    leaked = sorted({p for p in planted if p in log})
    assert not leaked, f"{len(leaked)} planted identifiers or texts in the log, e.g. {leaked[:3]}"
    assert re.search(r"quarantined rows: \d+", log)
