"""The scale benchmark: its synthetic hospital (seeded, streamed in chunks, planted atoms
and links) and, as a smoke test, the whole benchmark at a small size through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from benchmarks.hospital import HospitalConfig, generate, make_world

ROOT = Path(__file__).resolve().parents[2]


def test_hospital_is_seeded_streamed_and_planted(tmp_path: Path) -> None:
    cfg = HospitalConfig(studies=900, patients=600, dim=32, atoms=48, outcomes=12, chunk_patients=200, seed=4)
    counts = generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    for name in ("studies", "embeddings", "events"):
        a, b = (pq.read_table(tmp_path / d / f"{name}.parquet") for d in ("a", "b"))
        assert a.equals(b)
        assert pq.ParquetFile(tmp_path / "a" / f"{name}.parquet").num_row_groups == 3  # one per patient chunk
    st = pd.read_parquet(tmp_path / "a" / "studies.parquet")
    ev = pd.read_parquet(tmp_path / "a" / "events.parquet")
    assert counts == {"studies": 900, "patients": 600, "events": len(ev)} and st["study_id"].is_unique
    assert 40 <= len(ev) / 600 <= 60  # ~50 events a patient
    per = ev.groupby("subject_id")["code"].agg(list)
    assert all(c.count("MEDS_BIRTH") == 1 and (c.count("GENDER//F") + c.count("GENDER//M")) == 1 for c in per)
    assert ev.loc[ev["code"].str.startswith("GENDER"), "time"].isna().all()
    x = np.stack(pd.read_parquet(tmp_path / "a" / "embeddings.parquet")["embedding"].to_numpy())
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    world = make_world(cfg)
    for link in truth["links"]:
        shows = st["study_id"].isin(link["study_ids"]).to_numpy()
        proj = x @ world.atoms[link["atom"]]
        # the planted atom (coefficient 1..2) is in its studies, not in the others
        assert proj[shows].mean() > 1.0 and proj[shows].mean() - proj[~shows].mean() > 1.0
        assert link["outcome"] in {o["id"] for o in yaml.safe_load((tmp_path / "a" / "outcomes.yaml").read_text())
                                   ["outcomes"]}


@pytest.mark.slow
def test_benchmark_smoke_finds_the_planted_links(tmp_path: Path) -> None:
    """The benchmark end to end at 3,000 studies (an SAE of 256 features, 20 outcomes):
    every stage reports, and each planted link is found at rank 1 (by a finding: a
    feature family or a feature in no family)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--studies", "3000", "--dim", "128",
                          "--atoms", "128", "--features", "256", "--k", "8", "--outcomes", "20", "--epochs", "60",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    stages = {s["stage"]: s for s in lines if "stage" in s}
    assert {"generate", "studies", "events", "outcome_labels", "embeddings", "sae", "activations", "families",
            "feature_stats", "cohorts", "interpretations", "study_split", "associations", "survival",
            "report"} <= set(stages)
    assert stages["outcome_labels"]["rows"] == 3000 * 20 and stages["activations"]["rows"] == 3000 * 8
    n_units = stages["feature_stats"]["rows"]  # 256 features and the families found among them
    assert n_units >= 256 and stages["families"]["rows"] == n_units - 256
    assert stages["embeddings"]["rows"] == 3000 and stages["associations"]["rows"] == 2 * n_units * 20
    assert all(s["seconds"] >= 0 and s["peak_rss_gib"] > 0 for s in stages.values())
    summary = lines[-1]
    assert summary["summary"] and summary["planted_rank1"] and len(summary["links"]) == 4
    assert all(link["found_at_rank1"] and link["rank"] == 1 and link["jaccard"] > 0.5 and link["rank1_recall"] > 0.5
               for link in summary["links"])
    assert summary["flow_s"] >= summary["stages_s"] > 0
