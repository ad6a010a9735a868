"""The demo flow: generate a planted cohort, run discovery on it, check what was found."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.discovery import RunResult, discovery
from tasks.demo import check, generate


@flow(name="medconcepts-demo")
def demo(out_dir: str, n_patients: int = 2000, seed: int = 0) -> tuple[RunResult, bool]:
    out = Path(out_dir).resolve()
    config_path = generate(str(out), n_patients, seed)
    result = discovery(config_path)
    ok = check(
        result.store, str(out / "input" / "truth.json"), result.associations,
        {m: r.cohorts for m, r in result.modalities.items()}, str(out / "demo_check.json"),
        {m: r.interpretations for m, r in result.modalities.items()},
        {m: r.families for m, r in result.modalities.items()}, result.studies, config_path,
    )
    return result, ok
