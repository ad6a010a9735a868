"""The embedding and SAE-sweep stages on a Dask LocalCluster with 1 vs 2 workers, same data.

A synthetic demo cohort (`--patients`) is embedded (MiniLM reports, `--partitions` month
partition tasks) and an SAE sweep of `--sweep` runs is trained, through the real flow
wiring (`flows/embedding.py`, the mapped train task, sweep selection) on prefect-dask's
DaskTaskRunner, once on a cluster of 1 worker and once on 2 (1 thread each; the Dask
nanny pins BLAS/OpenMP to 1 thread per worker), each into a fresh store. Workers import the
code before timing starts; each worker loads the encoder once, which is part of the
embedding time. The peer is the 1-worker cluster in the same run: `speedup` = its seconds /
the 2-worker seconds per stage; `equal` compares every artifact file of both stores
(data_contracts/fingerprint.py: bytes, with the SAE's measured throughput left out).

Prints one JSON object. Usage:
  python benchmarks/distributed.py [--patients 300] [--partitions 4] [--sweep 4] [--epochs 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `distributed` package (Dask's): drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

if __name__ == "__main__":  # not in spawned Dask worker processes, which import this as __mp_main__
    WORK = Path(tempfile.mkdtemp(prefix="medconcepts-distributed-"))
    # before prefect is imported: its settings are read once
    os.environ.setdefault("PREFECT_HOME", str(WORK / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefect import flow, unmapped  # noqa: E402


def _warm() -> bool:
    import flows.embedding  # noqa: F401 - import torch, transformers, monai once per worker
    import tasks.sae  # noqa: F401

    return True


@flow(name="medconcepts-bench-embed-sweep")
def embed_and_sweep(config_path: str) -> dict[str, float]:
    from data_contracts.overrides import load_config
    from flows.embedding import embed_modality
    from tasks.ingest import ingest_studies
    from tasks.sae import select, trainer_for

    cfg = load_config(config_path)
    root = str(cfg.store)
    studies = ingest_studies(root, str(cfg.inputs.studies))
    (m,) = cfg.modalities
    t0 = time.perf_counter()
    emb = embed_modality(root, studies, m, str(cfg.inputs.studies.parent))
    t1 = time.perf_counter()
    runs = cfg.sae_runs()
    select(root, emb, trainer_for(runs).map(root, unmapped(emb), list(runs)), cfg.sae)
    t2 = time.perf_counter()
    return {"embed_s": t1 - t0, "sae_sweep_s": t2 - t1}


def write_config(cohort: Path, out: Path, args: argparse.Namespace, address: str) -> Path:
    from data_contracts.config import (
        InputsConfig,
        MiniLMConfig,
        ModalityConfig,
        RunConfig,
        SAEConfig,
        SAESweepConfig,
        dump_run_config,
    )
    from data_contracts.runner_config import RunnerConfig

    ks = (5, 10, 20, 40)[: args.sweep] if args.sweep <= 4 else tuple(range(4, 4 + args.sweep))
    cfg = RunConfig(
        store=out / "store",
        inputs=InputsConfig(studies=cohort / "studies.parquet", events=cohort / "events.parquet",
                            outcomes=cohort / "outcomes.yaml"),
        modalities=(ModalityConfig(modality="report", encoder=MiniLMConfig(device="cpu"), workers=args.partitions),),
        sae=SAEConfig(n_features=args.n_features, k=ks[0], epochs=args.epochs, device="cpu"),
        sae_sweep=SAESweepConfig(variants=("topk",), n_features=(args.n_features,), k=ks),
        runner=RunnerConfig(kind="dask", address=address),
    )
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(cfg, out / "run.yaml")
    return out / "run.yaml"


def run_with(n_workers: int, cohort: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    from flows.runner import api_for_workers, local_cluster

    with local_cluster(n_workers=n_workers, threads_per_worker=1, gpus=0) as cluster, Client(cluster) as client:
        client.run(_warm)
        config = write_config(cohort, work / f"workers-{n_workers}", args, cluster.scheduler_address)
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        with api_for_workers():
            times = embed_and_sweep.with_options(task_runner=runner)(str(config))
    store = str(work / f"workers-{n_workers}" / "store")
    return {"workers": n_workers, **{k: round(v, 2) for k, v in times.items()}, "store": store}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--partitions", type=int, default=4, help="month partition tasks (ModalityConfig.workers)")
    ap.add_argument("--sweep", type=int, default=4, help="SAE runs in the sweep")
    ap.add_argument("--n-features", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()

    work = WORK
    from data_contracts.fingerprint import store_fingerprint
    from models.demo.cohort import DemoCohortConfig, generate_demo_cohort

    cohort = work / "cohort"
    generate_demo_cohort(cohort, DemoCohortConfig(n_patients=args.patients, volume_shape=(16, 16, 8), seed=0))
    one, two = run_with(1, cohort, work, args), run_with(2, cohort, work, args)
    fp1, fp2 = store_fingerprint(one.pop("store")), store_fingerprint(two.pop("store"))
    print(json.dumps({
        "benchmark": "distributed", "cohort_patients": args.patients, "partitions": args.partitions,
        "sweep_runs": args.sweep, "n_features": args.n_features, "epochs": args.epochs,
        "one_worker": one, "two_workers": two,
        "speedup": {s: round(one[s] / two[s], 2) for s in ("embed_s", "sae_sweep_s")},
        "equal": fp1 == fp2, "artifact_files_compared": len(fp1),
        "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
