"""Time every stage of the discovery pipeline on a generated demo cohort, without Prefect.

Prints one JSON line per stage ({"stage", "modality", "seconds", "rows"}) and a summary
line. Usage: python benchmarks/demo_stages.py [--patients 2000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_contracts.config import InputsConfig
from data_contracts.store import ArtifactRef, ArtifactStore
from models.demo.cohort import DemoCohortConfig, generate_demo_cohort
from tasks.cohorts import cohorts_fn
from tasks.demo import demo_run_config
from tasks.encoders import embed_fn
from tasks.families import families_fn
from tasks.ingest import ingest_events_fn, ingest_studies_fn
from tasks.interpret import interpret_fn
from tasks.outcomes import outcomes_fn, study_split_fn
from tasks.sae import activations_fn, train_fn
from tasks.stats import associate_fn


def timed(store: ArtifactStore, stage: str, modality: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    ref = out[-1] if isinstance(out, tuple) else out
    rows = store.manifest(ref).get("rows") if isinstance(ref, ArtifactRef) else None
    print(json.dumps({"stage": stage, "modality": modality, "seconds": round(time.perf_counter() - t0, 3),
                      "rows": rows}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="medconcepts-bench-"))
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    paths = generate_demo_cohort(out / "input", DemoCohortConfig(n_patients=args.patients))
    print(json.dumps({"stage": "generate", "modality": "", "seconds": round(time.perf_counter() - t0, 3)}))
    inputs = InputsConfig(studies=paths.studies, events=paths.events, outcomes=paths.outcomes)
    cfg = demo_run_config(out, inputs)
    store = ArtifactStore(cfg.store)
    st = timed(store, "ingest_studies", "", lambda: ingest_studies_fn(store, inputs.studies))
    ev = timed(store, "ingest_events", "", lambda: ingest_events_fn(store, inputs.events))
    lab = timed(store, "outcome_labels", "", lambda: outcomes_fn(store, st, ev, inputs.outcomes, cfg.outcome_settings))
    per, embs = {}, {}
    for m in cfg.modalities:
        name = m.modality
        emb = timed(store, "embed", name, lambda m=m: embed_fn(store, st, m, str(inputs.studies.parent)))
        sae = timed(store, "train_sae", name, lambda emb=emb: train_fn(store, emb, cfg.sae))
        act = timed(store, "activations", name, lambda emb=emb, sae=sae: activations_fn(store, emb, sae))
        fam = timed(store, "families", name,
                    lambda emb=emb, sae=sae, act=act: families_fn(store, emb, sae, act, cfg.families))
        fs, coh = timed(store, "cohorts", name,
                        lambda emb=emb, sae=sae, act=act, fam=fam: cohorts_fn(store, emb, sae, act, fam, cfg.cohort))
        timed(store, "interpret", name,
              lambda coh=coh, name=name: interpret_fn(store, st, coh, name, cfg.interpretation))
        per[name] = (fs, coh)
        embs[name] = emb
    split = timed(store, "study_split", "", lambda: study_split_fn(store, lab, embs, cfg.association))
    timed(store, "associate", "", lambda: associate_fn(store, per, lab, split, cfg.association))
    total = round(time.perf_counter() - t_all, 2)
    print(json.dumps({"summary": True, "patients": args.patients, "total_seconds": total, "out": str(out)}))


if __name__ == "__main__":
    main()
