"""Interpretation speed: labels per second of the offline `keywords` interpreter, and calls
and seconds per feature of the `llm` interpreter against the scripted OpenAI-compatible
server of the tests (loopback, replies at once: this measures our side — prompt building,
HTTP, concurrency, parsing, scoring — not a model), cold and with the reply cache warm.

Same synthetic cohort for both (planted findings, tests/models/interpret/synthetic.py).
Prints one JSON line per measurement and a final {"summary": ...} line, with
os.getloadavg() beside the timings.
Usage: python benchmarks/interpret.py [--reports 2500] [--features 64] [--llm-features 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_contracts.config import InterpretConfig, LLMConfig
from models.interpret.features import interpret_features
from tests.models.interpret.fake_openai import FakeOpenAI, Response, chat
from tests.models.interpret.synthetic import synthetic


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


def _script(body: dict[str, Any]) -> Response:
    user = body["messages"][-1]["content"]
    if user.startswith("Finding:"):
        yes = "effusion" in user.lower().split("report:", 1)[1]
        return chat("Yes" if yes else "No", [("Yes", -0.1 if yes else -2.5), ("No", -2.5 if yes else -0.1)])
    return chat('{"label": "pleural effusion", "explanation": "Fluid in the pleural space."}')


def bench_keywords(reports: Any, cohorts: Any, repeats: int) -> dict[str, Any]:
    cfg = InterpretConfig()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = interpret_features(cohorts, reports, cfg, "report")
        best = min(best, time.perf_counter() - t0)
    n = len(out)
    return {"method": "keywords", "features": n, "seconds": round(best, 3), "labels_per_s": round(n / best, 2)}


def bench_llm(reports: Any, cohorts: Any, n_candidates: int, concurrency: int) -> list[dict[str, Any]]:
    rows = []
    with FakeOpenAI(_script) as srv, tempfile.TemporaryDirectory() as cache:
        llm = LLMConfig(base_url=srv.url, model="fake", n_candidates=n_candidates, concurrency=concurrency)
        cfg = InterpretConfig(method="llm", llm=llm)
        for phase in ("cold", "cached"):
            before = len(srv.requests)
            t0 = time.perf_counter()
            out = interpret_features(cohorts, reports, cfg, "report", cache_dir=Path(cache))
            dt = time.perf_counter() - t0
            calls = len(srv.requests) - before
            n = len(out)
            rows.append({"method": "llm", "cache": phase, "features": n, "calls": calls,
                         "calls_per_feature": round(calls / n, 1), "seconds_per_feature": round(dt / n, 4),
                         "n_candidates": n_candidates, "concurrency": concurrency})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=2500)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--llm-features", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    reports, cohorts = synthetic(a.reports, a.features, seed=7)
    kw = bench_keywords(reports, cohorts, a.repeats)
    emit(**kw, loadavg=os.getloadavg())
    llm_rows = bench_llm(reports, cohorts[cohorts["feature_id"] < a.llm_features], 3, a.concurrency)
    for r in llm_rows:
        emit(**r, loadavg=os.getloadavg())
    cold = llm_rows[0]
    emit(summary={"keywords_labels_per_s": kw["labels_per_s"], "llm_calls_per_feature": cold["calls_per_feature"],
                  "llm_seconds_per_feature_fake_server": cold["seconds_per_feature"],
                  "llm_calls_on_rerun": llm_rows[1]["calls"],
                  "llm_vs_keywords_seconds_per_feature": round(
                      cold["seconds_per_feature"] / (kw["seconds"] / kw["features"]), 1)})


if __name__ == "__main__":
    main()
