"""The real chest X-ray reports used for development (`shared/data/cxr_reports_dev.jsonl`,
Indiana University / OpenI, MeSH labels) and their MiniLM embeddings, shared by the
benchmarks that ask what real radiology language does to features and labels.

A report's text is its findings and impression sections ("FINDINGS: ...\nIMPRESSION: ..."),
empty sections left out; the indication is not part of the report a model reads (it is the
question, not the answer). Embedding 1,313 reports costs about a minute of CPU, so the
matrix is cached (default /work/cache/cxr_minilm.npz, written to a temporary name and then
renamed) with the ids and a digest of the texts it was made from: a cache made from other
texts is refused instead of silently reused.

Usage: python benchmarks/cxr_data.py [--data PATH] [--cache PATH]   (prints JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cxr_reports_dev.jsonl"
DEFAULT_CACHE = Path(os.environ.get("MEDCONCEPTS_CXR_CACHE", "/work/cache/cxr_minilm.npz"))


@dataclass(frozen=True)
class CxrReports:
    ids: list[str]
    texts: list[str]
    labels: list[list[str]]  # MeSH major headings, lower-cased

    def digest(self) -> str:
        h = hashlib.sha256()
        for i, t in zip(self.ids, self.texts, strict=True):
            h.update(f"{i}\x00{t}\x01".encode())
        return h.hexdigest()


def default_data_path() -> Path:
    """The dev reports beside the repository (`../shared/data`), else /work/shared/data."""
    for p in (DEFAULT_DATA, Path("/work/shared/data/cxr_reports_dev.jsonl")):
        if p.is_file():
            return p
    return DEFAULT_DATA


def report_text(rec: dict[str, str]) -> str:
    parts = [f"{name.upper()}: {rec.get(name, '').strip()}" for name in ("findings", "impression")
             if rec.get(name, "").strip()]
    return "\n".join(parts)


def load_reports(path: Path | None = None) -> CxrReports:
    """Reports with any text, in file order."""
    ids, texts, labels = [], [], []
    with open(path or default_data_path()) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            text = report_text(rec)
            if text:
                ids.append(str(rec["id"]))
                texts.append(text)
                labels.append([str(x).lower() for x in rec.get("labels", [])])
    return CxrReports(ids, texts, labels)


def embed_reports(reports: CxrReports, cache: Path | None = DEFAULT_CACHE) -> np.ndarray:
    """MiniLM embeddings (n x 384, float32), from the cache when it was made from these texts."""
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["digest"]) == reports.digest():
                return np.asarray(z["x"], dtype=np.float32)
        raise ValueError(f"{cache} was made from other report texts; delete it or pass another --cache")
    from data_contracts.config import MiniLMConfig
    from models.encoders.text_minilm import MiniLMEncoder

    res = MiniLMEncoder(MiniLMConfig()).encode(reports.texts)
    if res.errors:
        raise ValueError(f"{len(res.errors)} reports could not be embedded: {sorted(res.errors)[:5]}")
    x = np.asarray(res.vectors, dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.parent / f".{cache.name}.{uuid.uuid4().hex}.tmp.npz"
        np.savez(tmp, x=x, ids=np.asarray(reports.ids), digest=np.asarray(reports.digest()),
                 text_format=np.asarray("FINDINGS: ...\\nIMPRESSION: ... (benchmarks/cxr_data.py)"))
        os.replace(tmp, cache)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    a = ap.parse_args()
    reports = load_reports(a.data)
    x = embed_reports(reports, a.cache)
    print(json.dumps({"reports": len(reports.ids), "dim": int(x.shape[1]), "cache": str(a.cache),
                      "digest": reports.digest()[:16]}))


if __name__ == "__main__":
    main()
