"""Hospital scale, end to end: generate a synthetic hospital (benchmarks/hospital.py), run
the real discovery flow on it through the CLI (`medconcepts run`, Prefect embedded server,
precomputed encoder, Matryoshka SAE), and check that the planted links are found.

Prints JSON lines on stdout: one per stage (seconds, peak RSS of the flow process during
the stage, rows of its artifact), then a summary with the total, peak RSS and each planted
link's rank. Prefect's own output goes to stderr. Exit code 3 when a planted link is not
at rank 1 (unless --no-check): the finding ranked first for its outcome must match the
atom's studies with Jaccard >= 1/3, the demo self-check's rule.

    .venv/bin/python benchmarks/scale.py --studies 20000 --epochs 2 [--out DIR] [--keep]

The generator and the flow run in child processes, so each one's peak RSS is its own
(os.wait4); inside the flow process a sampler reads the RSS every 0.1 s, and the stage
windows come from the log records `tasks.stage.run_stage` tags with `stage_event`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

if __package__ in (None, ""):  # run as a script: make `benchmarks.hospital` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hospital import HospitalConfig, generate
from models.demo.check import MIN_JACCARD

GIB = 2**30
PAGE = os.sysconf("SC_PAGE_SIZE")


def emit(**kw: Any) -> None:
    print(json.dumps(kw, default=str), flush=True)


# ---------------------------------------------------------------- flow process
class StageRecorder(logging.Filter):
    """Stage windows from run_stage's tagged log records, peak RSS from a sampler. A
    filter, not a handler: prefect re-applies its logging config when the flow starts,
    which drops the handlers of its child loggers but keeps their filters."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[tuple[float, int]] = []
        self.open: dict[str, float] = {}
        self.stages: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._rss()))
            self._stop.wait(0.1)

    def filter(self, record: logging.LogRecord) -> bool:
        self.record(record)
        return True

    def record(self, record: logging.LogRecord) -> None:
        event, kind = getattr(record, "stage_event", None), getattr(record, "stage", None)
        now = time.perf_counter()
        if event == "start":
            self.open[kind] = now
        elif event == "end" and kind in self.open:
            t0 = self.open.pop(kind)
            peak = max((r for t, r in self.samples if t0 <= t <= now), default=self._rss())
            self.stages.append({"stage": kind, "seconds": round(now - t0, 2), "peak_rss_gib": round(peak / GIB, 3),
                                "rows": getattr(record, "rows", None)})
        elif event == "reused":
            self.stages.append({"stage": kind, "seconds": 0.0, "peak_rss_gib": None, "reused": True,
                                "rows": getattr(record, "rows", None)})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def flow_child(config: Path, result: Path) -> None:
    """Run `medconcepts run CONFIG` in this process and write the stage records."""
    from data_contracts.config import load_run_config
    from flows.cli import _setup_env, main

    # The CLI's environment (PREFECT_HOME, ...) before prefect is imported; the `run`
    # command below starts (and waits for) the run's own Prefect server.
    _setup_env(Path(load_run_config(config).store) / ".prefect", own_server=False)
    from tasks.stage import log

    rec = StageRecorder()
    log.addFilter(rec)
    log.setLevel(logging.INFO)  # the stage records are INFO
    t0 = time.perf_counter()
    try:
        main(["run", str(config)], standalone_mode=False)
    finally:
        rec.stop()
    result.write_text(json.dumps({"stages": rec.stages, "flow_seconds": time.perf_counter() - t0,
                                  "self_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


# ---------------------------------------------------------------- orchestration
def run_child(args: list[str], stdout: Any = None) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes of the child and its waited-for descendants, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=stdout or sys.stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss * 1024, proc.returncode


def write_config(out: Path, cfg: HospitalConfig, a: argparse.Namespace) -> Path:
    run = {
        "name": f"scale {cfg.studies} studies",
        "store": "store", "report_dir": "report",
        "inputs": {"studies": "input/studies.parquet", "events": "input/events.parquet",
                   "outcomes": "input/outcomes.yaml"},
        "modalities": [{"modality": "image", "encoder": {"name": "precomputed", "path": "input/embeddings.parquet"}}],
        "sae": {"variant": "matryoshka_topk", "n_features": a.features, "k": a.k, "epochs": a.epochs},
    }
    path = out / "run.yaml"
    path.write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def _artifact(store: Path, kind: str) -> Path:
    record = max((store / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    refs = [r for r in json.loads(record.read_text())["artifacts"] if r["kind"] == kind]
    return store / "artifacts" / kind / refs[0]["version"] / "data.parquet"


def check_links(store: Path, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Per planted link: the finding ranked first for the linked outcome (discovery), how
    its exposed cohort matches the atom's studies (`rank1_jaccard`, `rank1_precision`,
    `rank1_recall`; the link is found at rank 1 under the demo self-check's rule, Jaccard
    >= 1/3, i.e. Dice >= 1/2: precision alone is capped by the top-percentile cohort, at
    0.4 when a 10% cohort holds a 4% atom whole), and the finding whose
    cohort best matches the atom's studies (Jaccard) with its own rank. A finding is a
    feature family or a feature in no family (a family's members are tested, not ranked);
    an SAE may still split an atom over several findings, and any of them ranking first
    finds the link."""
    key = ["unit", "feature_id"]
    stats = pq.read_table(_artifact(store, "feature_stats"), columns=[*key, "family_id"]).to_pandas()
    findings = pd.MultiIndex.from_frame(stats.loc[(stats["unit"] == "family") | stats["family_id"].isna(), key])
    coh = pq.read_table(_artifact(store, "cohorts"), columns=[*key, "study_id", "role"],
                        filters=[("role", "=", "exposed")]).to_pandas()
    coh = coh[pd.MultiIndex.from_frame(coh[key]).isin(findings)]
    size = coh.groupby(key).size()
    outcomes = [link["outcome"] for link in truth["links"]]
    assoc = pq.read_table(_artifact(store, "associations"), filters=[("split", "=", "discovery"),
                                                                     ("outcome_id", "in", outcomes)],
                          columns=[*key, "outcome_id", "rank", "n_ranked", "adj_odds_ratio"]).to_pandas()
    rows = []
    for link in truth["links"]:
        planted = set(link["study_ids"])
        inter = coh[coh["study_id"].isin(planted)].groupby(key).size()
        jac = (inter / (size.reindex(inter.index) + len(planted) - inter)).sort_values(ascending=False)
        best = jac.index[0] if len(jac) else None
        a = assoc[(assoc["outcome_id"] == link["outcome"])]
        hit = a[(a["unit"] == best[0]) & (a["feature_id"] == best[1])] if best is not None else a.iloc[0:0]
        top = a[a["rank"] == 1]
        rank = hit["rank"].iloc[0] if len(hit) else None
        top_key = (str(top["unit"].iloc[0]), int(top["feature_id"].iloc[0])) if len(top) else None
        prec, rec = _match(inter, size, len(planted), top_key)
        jac1 = float(jac.get(top_key, 0.0)) if top_key is not None else 0.0
        rows.append({"outcome": link["outcome"], "atom": link["atom"], "planted_studies": len(planted),
                     "unit": None if best is None else str(best[0]),
                     "feature": None if best is None else int(best[1]),
                     "jaccard": round(float(jac.iloc[0]), 3) if best is not None else None,
                     "rank": None if rank is None or pd.isna(rank) else int(rank),
                     "n_ranked": int(a["n_ranked"].max()) if len(a) else 0,
                     "adj_odds_ratio": float(hit["adj_odds_ratio"].iloc[0]) if len(hit) else None,
                     "rank1_unit": None if top_key is None else top_key[0],
                     "rank1_feature": None if top_key is None else top_key[1],
                     "rank1_jaccard": round(jac1, 3), "rank1_precision": round(prec, 3),
                     "rank1_recall": round(rec, 3), "found_at_rank1": jac1 >= MIN_JACCARD})
    return rows


def _match(inter: pd.Series, size: pd.Series, planted: int, key: tuple[str, int] | None) -> tuple[float, float]:
    """(precision, recall) of one finding's exposed cohort against the planted studies."""
    if key is None or key not in size.index:
        return 0.0, 0.0
    both = float(inter.get(key, 0))
    return both / float(size[key]), both / planted


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        cfg = HospitalConfig(**json.loads(sys.argv[3]))
        Path(sys.argv[4]).write_text(json.dumps(generate(Path(sys.argv[2]), cfg)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_flow":
        flow_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    a = parse_args()
    cfg = HospitalConfig(**{f.name: getattr(a, f.name) for f in fields(HospitalConfig) if hasattr(a, f.name)})
    out = (a.out or Path(tempfile.mkdtemp(prefix="medconcepts-scale-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    emit(event="start", **asdict(cfg), features=a.features, k=a.k, epochs=a.epochs, out=str(out),
         load=os.getloadavg(), cpus=os.cpu_count())
    gen_s, gen_rss, rc = run_child(["_generate", str(out / "input"), json.dumps(asdict(cfg)), str(out / "gen.json")])
    if rc:
        sys.exit(f"generator failed (exit {rc})")
    counts = json.loads((out / "gen.json").read_text())
    emit(stage="generate", seconds=round(gen_s, 2), peak_rss_gib=round(gen_rss / GIB, 3), **counts)
    config = write_config(out, cfg, a)
    load_before = os.getloadavg()
    flow_s, flow_rss, rc = run_child(["_flow", str(config), str(out / "stages.json")])
    if rc:
        sys.exit(f"flow failed (exit {rc})")
    stages = json.loads((out / "stages.json").read_text())
    for s in stages["stages"]:
        emit(**s)
    links = check_links(out / "store", json.loads((out / "input" / "truth.json").read_text()))
    ok = all(link["found_at_rank1"] for link in links)
    staged = sum(s["seconds"] for s in stages["stages"])
    emit(summary=True, studies=counts["studies"], patients=counts["patients"], events=counts["events"],
         dim=cfg.dim, features=a.features, k=a.k, outcomes=cfg.outcomes, epochs=a.epochs,
         generate_s=round(gen_s, 1), flow_s=round(flow_s, 1), stages_s=round(staged, 1),
         outside_stages_s=round(stages["flow_seconds"] - staged, 1),
         peak_rss_gib=round(flow_rss / GIB, 3), links=links, planted_rank1=ok,
         load_before=load_before, load_after=os.getloadavg(), cpus=os.cpu_count())
    if not a.keep and a.out is None:
        shutil.rmtree(out, ignore_errors=True)
    if not ok and not a.no_check:
        sys.exit(3)


def parse_args() -> argparse.Namespace:
    d = HospitalConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=d.studies)
    ap.add_argument("--patients", type=int, default=d.patients, help="0: as many as studies")
    ap.add_argument("--dim", type=int, default=d.dim)
    ap.add_argument("--atoms", type=int, default=d.atoms)
    ap.add_argument("--outcomes", type=int, default=d.outcomes)
    ap.add_argument("--events-per-patient", dest="events_per_patient", type=int, default=d.events_per_patient)
    ap.add_argument("--links", type=int, default=d.links)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--features", type=int, default=8192, help="SAE dictionary size N")
    ap.add_argument("--k", type=int, default=20, help="SAE TopK")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--no-check", action="store_true", help="exit 0 even when a planted link is not at rank 1")
    return ap.parse_args()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
