"""A synthetic hospital for the scale benchmark, generated in patient chunks and streamed
to parquet: nothing is held whole, so generating 200,000 studies costs the memory of one
chunk.

- P patients (birth, sex; some die), S studies spread over them (multinomial), each study
  in 2014-2021.
- Embeddings (d dims): each study is a sparse, non-negative sum of planted unit-norm atoms
  plus noise, so an SAE has real features to find. One atom grows more frequent with age
  (a confounder: outcomes grow more frequent with age too).
- A short report per study naming its atoms with pseudo-words, for the interpreter.
- MEDS events (~`events_per_patient` a patient): birth, sex (static, null time), death,
  first and repeat codes of `outcomes` code families (`SYN//F000.3`: family 000, code 3),
  whose baseline risk is log-uniform and rises with age, and filler lab codes.
- `links` planted atom -> outcome links: a patient whose study shows the atom develops the
  linked outcome within 3.5 years with probability `link_risk`.

`truth.json` lists each planted atom's studies and linked outcome.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

US_PER_DAY = 86_400 * 10**6
YEAR_US = int(365.25 * US_PER_DAY)
STUDY_START = np.datetime64("2014-01-01", "us").astype(np.int64)
STUDY_END = np.datetime64("2022-01-01", "us").astype(np.int64)
EHR_START = np.datetime64("2010-01-01", "us").astype(np.int64)
DATA_END = np.datetime64("2025-12-31", "us").astype(np.int64)
AGE_REF = np.datetime64("2018-01-01", "us").astype(np.int64)
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


@dataclass(frozen=True)
class HospitalConfig:
    studies: int = 20_000
    patients: int = 0  # 0: as many as studies
    dim: int = 1024
    atoms: int = 1024
    atoms_per_study: float = 8.0  # mean number of atoms in a study
    outcomes: int = 300
    events_per_patient: int = 50
    links: int = 4
    link_risk: float = 0.3
    noise: float = 0.05
    seed: int = 0
    chunk_patients: int = 10_000

    @property
    def n_patients(self) -> int:
        return self.patients or self.studies


@dataclass(frozen=True)
class World:
    """What every chunk shares: atoms, their frequencies and words, outcome risks, links."""

    atoms: np.ndarray  # (A, d) float32 unit rows
    freq: np.ndarray  # (A,) chance a study shows the atom
    words: list[str]
    prevalence: np.ndarray  # (O,) baseline chance of each outcome family per patient
    link_atoms: np.ndarray  # (L,)
    link_outcomes: np.ndarray  # (L,)
    age_atom: int


def make_world(cfg: HospitalConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 0])
    atoms = rng.standard_normal((cfg.atoms, cfg.dim)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, cfg.atoms + 1) ** 0.6  # Zipf-like: a few common atoms, many rare
    freq = np.minimum(0.3, weights[rng.permutation(cfg.atoms)] * cfg.atoms_per_study / weights.sum())
    chosen = rng.choice(cfg.atoms, size=cfg.links + 1, replace=False)
    freq[chosen] = 0.04  # planted findings and the age-linked atom: common enough to learn
    words = _words(rng, cfg.atoms)
    prevalence = np.exp(rng.uniform(np.log(0.002), np.log(0.08), cfg.outcomes))
    link_outcomes = rng.choice(cfg.outcomes, size=cfg.links, replace=False)
    prevalence[link_outcomes] = 0.01
    return World(atoms, freq, words, prevalence, chosen[:-1], link_outcomes, int(chosen[-1]))


def _words(rng: np.random.Generator, n: int) -> list[str]:
    seen: set[str] = set()
    out = []
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES, size=3))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _years(rng: np.random.Generator, lo: float, hi: float, size: int | tuple[int, ...]) -> np.ndarray:
    return (rng.uniform(lo, hi, size) * YEAR_US).astype(np.int64)


@dataclass
class Chunk:
    studies: pa.Table
    embeddings: pa.Table
    events: pa.Table
    link_studies: list[list[str]]  # per link: study ids showing its atom


def make_chunk(cfg: HospitalConfig, world: World, index: int, first_patient: int, counts: np.ndarray,
               first_study: int) -> Chunk:
    rng = np.random.default_rng([cfg.seed, 1, index])
    n = len(counts)
    subject = np.arange(first_patient, first_patient + n, dtype=np.int64)
    male = rng.random(n) < 0.5
    birth = AGE_REF - _years(rng, 20, 90, n)
    pat = np.repeat(np.arange(n), counts)
    t = rng.integers(STUDY_START, STUDY_END, len(pat))
    age = (t - birth[pat]) / YEAR_US
    active = _atom_draws(rng, world, age)
    x = (active * rng.uniform(1.0, 2.0, active.shape)).astype(np.float32) @ world.atoms
    x += rng.normal(0.0, cfg.noise, x.shape).astype(np.float32)
    ids = np.array([f"ST{first_study + i:08d}" for i in range(len(pat))], dtype=object)
    studies = pa.table({"study_id": ids, "subject_id": subject[pat], "study_time": pa.array(t, pa.timestamp("us")),
                        "report_text": _reports(world, active)})
    flat = pa.array(x.reshape(-1), pa.float32())
    embeddings = pa.table({"study_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(flat, cfg.dim)})
    onset = _onsets(rng, cfg, world, birth, pat, t, active)
    last = np.full(n, STUDY_START)
    np.maximum.at(last, pat, t)
    death = np.where(rng.random(n) < 0.1, last + _years(rng, 0.05, 8.0, n), np.iinfo(np.int64).max)
    events = _events(rng, cfg, subject, birth, male, death, onset)
    links = [ids[active[:, a]].tolist() for a in world.link_atoms]
    return Chunk(studies, embeddings, events, links)


def _atom_draws(rng: np.random.Generator, world: World, age: np.ndarray) -> np.ndarray:
    p = np.broadcast_to(world.freq, (len(age), len(world.freq))).copy()
    p[:, world.age_atom] = np.clip(0.04 * np.exp(0.04 * (age - 60)), 0, 0.5)
    return rng.random(p.shape) < p


def _reports(world: World, active: np.ndarray) -> list[str]:
    rows, cols = np.nonzero(active)
    per = np.split(cols, np.cumsum(np.bincount(rows, minlength=len(active)))[:-1])
    out = []
    for c in per:
        w = [world.words[i] for i in c]
        out.append(f"FINDINGS: {', '.join(w)}. IMPRESSION: {w[0]}." if w else "FINDINGS: unremarkable study.")
    return out


def _onsets(rng: np.random.Generator, cfg: HospitalConfig, world: World, birth: np.ndarray, pat: np.ndarray,
            t: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(patients, outcomes) first-onset times (int64 us; int64 max where none)."""
    n = len(birth)
    age = (AGE_REF - birth) / YEAR_US
    risk = np.clip(world.prevalence[None, :] * np.exp(0.02 * (age[:, None] - 55)), 0, 0.9)
    has = rng.random((n, cfg.outcomes)) < risk
    onset = np.where(has, EHR_START + _years(rng, 0, (DATA_END - EHR_START) / YEAR_US, has.shape),
                     np.iinfo(np.int64).max)
    for a, o in zip(world.link_atoms, world.link_outcomes, strict=True):
        hit = np.flatnonzero(active[:, a] & (rng.random(len(t)) < cfg.link_risk))
        np.minimum.at(onset[:, o], pat[hit], t[hit] + _years(rng, 0.1, 3.5, len(hit)))
    return onset


def _events(rng: np.random.Generator, cfg: HospitalConfig, subject: np.ndarray, birth: np.ndarray,
            male: np.ndarray, death: np.ndarray, onset: np.ndarray) -> pa.Table:
    end = np.minimum(death, DATA_END)
    p_idx, fam = np.nonzero(onset <= end[:, None])
    first = onset[p_idx, fam]
    repeat = rng.poisson(1.0, len(p_idx))
    rp = np.repeat(np.arange(len(p_idx)), repeat)
    rep_t = np.minimum(first[rp] + _years(rng, 0, 2, len(rp)), end[p_idx[rp]])
    o_pat = np.concatenate([p_idx, p_idx[rp]])
    o_fam = np.concatenate([fam, fam[rp]])
    o_code = np.char.add(np.char.add("SYN//F", np.char.zfill(o_fam.astype(str), 3)),
                         np.char.add(".", rng.integers(0, 10, len(o_pat)).astype(str)))
    dead = np.flatnonzero(death <= DATA_END)
    n_fill = np.maximum(10, cfg.events_per_patient - 3 - np.bincount(o_pat, minlength=len(subject)))
    f_pat = np.repeat(np.arange(len(subject)), n_fill)
    f_t = EHR_START + (rng.random(len(f_pat)) * (end[f_pat] - EHR_START)).astype(np.int64)
    none = np.full(len(subject), np.iinfo(np.int64).min)
    parts = [  # (patient, time or int64 min for null, code, value)
        (np.arange(len(subject)), birth, np.full(len(subject), "MEDS_BIRTH"), None),
        (np.arange(len(subject)), none, np.where(male, "GENDER//M", "GENDER//F"), None),
        (dead, death[dead], np.full(len(dead), "MEDS_DEATH"), None),
        (o_pat, np.concatenate([first, rep_t]), o_code, None),
        (f_pat, f_t, np.char.add("LAB//", rng.integers(0, 200, len(f_pat)).astype(str)),
         rng.normal(1.0, 0.3, len(f_pat))),
    ]
    return _event_table(subject, parts)


def _event_table(subject: np.ndarray, parts: list) -> pa.Table:
    pat = np.concatenate([p for p, _, _, _ in parts])
    time = np.concatenate([t for _, t, _, _ in parts])
    code = np.concatenate([np.asarray(c, dtype=object) for _, _, c, _ in parts])
    value = np.concatenate([np.full(len(p), np.nan) if v is None else v for p, _, _, v in parts])
    order = np.lexsort((time, pat))
    time = time[order]
    null = time == np.iinfo(np.int64).min
    return pa.table({
        "subject_id": subject[pat[order]],
        "time": pa.array(np.where(null, 0, time), pa.timestamp("us"), mask=null),
        "code": pa.array(code[order], pa.string()),
        "numeric_value": pa.array(value[order], pa.float64(), mask=np.isnan(value[order])),
    })


def outcome_definitions(cfg: HospitalConfig) -> dict:
    return {"outcomes": [{"id": f"f{j:03d}", "name": f"Synthetic code family {j:03d}", "codes": [f"SYN//F{j:03d}"],
                          "window_years": 4, "exclude_prior": True} for j in range(cfg.outcomes)]}


def generate(out: Path, cfg: HospitalConfig) -> dict[str, object]:
    """Write studies, embeddings, events, outcomes and truth under `out`; returns counts."""
    out.mkdir(parents=True, exist_ok=True)
    world = make_world(cfg)
    counts = np.random.default_rng([cfg.seed, 2]).multinomial(cfg.studies, np.full(cfg.n_patients,
                                                                                     1 / cfg.n_patients))
    links: list[list[str]] = [[] for _ in range(cfg.links)]
    writers: dict[str, pq.ParquetWriter] = {}
    n_events = first_study = 0
    try:
        for i, lo in enumerate(range(0, cfg.n_patients, cfg.chunk_patients)):
            c = counts[lo:lo + cfg.chunk_patients]
            chunk = make_chunk(cfg, world, i, lo, c, first_study)
            first_study += int(c.sum())
            n_events += chunk.events.num_rows
            for name in ("studies", "embeddings", "events"):
                table = getattr(chunk, name)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(out / f"{name}.parquet", table.schema, compression="zstd")
                writers[name].write_table(table)
            for acc, ids in zip(links, chunk.link_studies, strict=True):
                acc.extend(ids)
    finally:
        for w in writers.values():
            w.close()
    (out / "outcomes.yaml").write_text(yaml.safe_dump(outcome_definitions(cfg), sort_keys=False))
    truth = {"config": asdict(cfg), "links": [
        {"atom": int(a), "outcome": f"f{o:03d}", "study_ids": ids}
        for a, o, ids in zip(world.link_atoms, world.link_outcomes, links, strict=True)]}
    (out / "truth.json").write_text(json.dumps(truth))
    return {"studies": first_study, "patients": cfg.n_patients, "events": n_events}
