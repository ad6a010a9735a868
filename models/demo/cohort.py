"""Synthetic demo cohort: CT volumes, radiology reports and MEDS events with planted truth.

`medconcepts demo` must run with no GPU, network or patient data and then check that the
pipeline rediscovers what was planted. So this writes a small cohort in exactly the input
contracts (STUDIES, MEDS_EVENTS, outcome YAML) plus `truth.json`: cirrhosis foretells
liver cancer and coronary calcification heart failure; spondylosis rises with age, as
heart failure does, so it is associated only through age (a confounder trap);
appendicitis is a null outcome; incidental findings are linked to nothing. Every finding
is drawn in the image and written in the report of the same study. Each patient/study
draws from its own `default_rng([seed, stream, patient, visit])`, so output is
deterministic per seed and independent of loop order.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.schemas import MEDS_EVENTS, STUDIES
from models.demo import reports as dr
from models.demo.reports import StudyFacts
from models.demo.volumes import Grid, nifti_header, paint_volume, write_gz

DAY_US = 86_400 * 10**6
YEAR_US = int(365.25 * DAY_US)
INCIDENTAL_PREV = {"renal_cyst": 0.10, "gallstones": 0.08, "pleural_effusion": 0.06,
                   "diverticulosis": 0.12, "hepatic_cyst": 0.07, "hiatal_hernia": 0.06}
BACKGROUND_DX = (("E11.9", 0.12, 0.01), ("I10", 0.30, 0.02), ("J44.9", 0.07, 0.01),
                 ("M54.5", 0.12, 0.0), ("E78.5", 0.22, 0.01), ("K21.9", 0.10, 0.0),
                 ("N18.3", 0.05, 0.02), ("F32.9", 0.08, 0.0))  # code, prevalence, age slope
OUTCOME_CODES = {"liver_cancer": ("C22.0", "C22.0", "C22.8", "C22.9"),
                 "heart_failure": ("I50.9", "I50.22", "I50.32", "I50.9"),
                 "appendicitis": ("K35.80", "K35.89", "K35.20")}
FINDING_DX = {"cirrhosis": ("K74.60", 0.6), "coronary_calcification": ("I25.10", 0.4),
              "spondylosis": ("M47.816", 0.3)}  # chronic EHR code, fraction of carriers coded


@dataclass(frozen=True)
class DemoCohortConfig:
    """Knobs of the demo cohort. Dates are ISO `YYYY-MM-DD`; first studies are drawn
    uniformly in [first_study, last_study]; follow-up runs until data_end, death or loss.

    `*_4y` are target 4-year incidences (linked finding carriers, non-carriers); heart
    failure's non-carrier rate is at age 63 and grows with age. `noise_sigma_hu` is the
    per-study range of image noise. `write_images=False` skips the NIfTI files (fast tests
    of the tabular side); `image_path` is then null.
    """

    n_patients: int = 2000
    seed: int = 0
    volume_shape: tuple[int, int, int] = (48, 48, 32)  # voxels x, y, z (RAS)
    spacing_mm: tuple[float, float, float] = (8.0, 8.0, 10.0)
    first_study: str = "2015-01-01"
    last_study: str = "2019-12-31"
    data_end: str = "2024-12-31"
    repeat_study_frac: float = 0.15  # patients with a second study 6-30 months later
    cirrhosis_prevalence: float = 0.08
    coronary_prevalence: float = 0.10
    liver_cancer_4y: tuple[float, float] = (0.25, 0.008)
    heart_failure_4y: tuple[float, float] = (0.20, 0.03)
    appendicitis_4y: float = 0.01
    lost_to_followup_frac: float = 0.15
    noise_sigma_hu: tuple[float, float] = (8.0, 15.0)
    write_images: bool = True

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise ValueError(f"n_patients must be >= 1, got {self.n_patients}")
        if len(self.volume_shape) != 3 or min(self.volume_shape) < 8:
            raise ValueError(f"volume_shape must be 3 sizes >= 8, got {self.volume_shape}")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be 3 positive sizes, got {self.spacing_mm}")
        try:
            d0, d1, d2 = (np.datetime64(d, "D") for d in (self.first_study, self.last_study,
                                                           self.data_end))
        except ValueError as e:
            raise ValueError(f"first_study/last_study/data_end must be YYYY-MM-DD: {e}") from e
        if not d0 <= d1 < d2 - np.timedelta64(365, "D"):
            raise ValueError("need first_study <= last_study and data_end > last_study + 1 year")
        for name in ("repeat_study_frac", "appendicitis_4y", "cirrhosis_prevalence",
                     "coronary_prevalence", "lost_to_followup_frac", "liver_cancer_4y",
                     "heart_failure_4y"):
            v = np.atleast_1d(getattr(self, name))
            if v.size not in (1, 2) or not ((v >= 0.0) & (v <= 0.6)).all():
                raise ValueError(f"{name} must be fraction(s) in [0, 0.6], got {v.tolist()}")
        if not 0 <= self.noise_sigma_hu[0] <= self.noise_sigma_hu[1]:
            raise ValueError(f"noise_sigma_hu must be (low, high) with 0 <= low <= high, "
                             f"got {self.noise_sigma_hu}")


@dataclass(frozen=True)
class DemoCohortPaths:
    """Where each input went; image paths in studies.parquet are relative to `root`."""

    root: Path
    studies: Path
    events: Path
    outcomes: Path
    truth: Path
    images: Path


def _us(date: str) -> int:
    return int(np.datetime64(date, "us").astype(np.int64))


def _day(t: np.ndarray | int) -> np.ndarray:
    """Floor to midnight: EHR codes carry dates, studies carry clock times."""
    return np.asarray(t, dtype=np.int64) // DAY_US * DAY_US


def _sample_patients(cfg: DemoCohortConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Demographics, index study time and the (persistent) findings of every patient."""
    n = cfg.n_patients
    age = np.clip(rng.normal(63.0, 11.0, n), 40.0, 90.0)
    male = rng.random(n) < 0.5
    lo, hi = _us(cfg.first_study) // DAY_US, _us(cfg.last_study) // DAY_US
    t0 = rng.integers(lo, hi + 1, n) * DAY_US + rng.integers(8 * 3600, 20 * 3600, n) * 10**6
    birth = _day(t0 - (age * YEAR_US).astype(np.int64))
    p = {"cirrhosis": cfg.cirrhosis_prevalence * np.where(male, 1.15, 0.85),
         "coronary_calcification": cfg.coronary_prevalence * np.exp(0.015 * (age - 63.0)),
         "spondylosis": 0.02 + 0.40 / (1.0 + np.exp(-(age - 68.0) / 4.0))}
    p |= {k: np.full(n, v) for k, v in INCIDENTAL_PREV.items()}
    pat = {"age": age, "male": male, "t0": t0, "birth": birth}
    pat |= {k: rng.random(n) < np.clip(v, 0, 1) for k, v in p.items()}
    pat["ascites"] = pat["cirrhosis"] & (rng.random(n) < 0.4)
    return pat


def _sample_followup(cfg: DemoCohortConfig, rng: np.random.Generator, pat: dict) -> None:
    """Death, loss to follow-up and the optional second study (added to `pat`)."""
    n, t0, end = cfg.n_patients, pat["t0"], _us(cfg.data_end)
    hazard = 0.012 * np.exp((pat["age"] - 63.0) / 10.0) + 0.05 * pat["cirrhosis"]
    death = _day(t0 + DAY_US + (rng.exponential(1.0, n) / hazard * YEAR_US).astype(np.int64))
    lost = rng.random(n) < cfg.lost_to_followup_frac
    ltfu = _day(t0 + DAY_US + (rng.random(n) * (end - t0)).astype(np.int64))
    ltfu = np.where(lost, ltfu, end)
    pat["fu_end"] = np.minimum(np.minimum(death, ltfu), end)
    pat["died"] = death <= np.minimum(ltfu, end)
    pat["admin"] = ~pat["died"] & ~lost  # administratively censored at data_end
    t1 = t0 + (rng.uniform(0.5, 2.5, n) * YEAR_US).astype(np.int64) // 60_000_000 * 60_000_000
    ok = t1 < pat["fu_end"] - 30 * DAY_US
    p_repeat = min(1.0, cfg.repeat_study_frac / max(ok.mean(), 1e-9))
    pat["t1"] = np.where(ok & (rng.random(n) < p_repeat), t1, -1)


def _outcome_risks(cfg: DemoCohortConfig, pat: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-patient (4-year incidence, prior prevalence) of each outcome."""
    age, cirr, cor = pat["age"], pat["cirrhosis"], pat["coronary_calcification"]
    lc_yes, lc_no = cfg.liver_cancer_4y
    hf_yes, hf_no = cfg.heart_failure_4y
    age_f = np.exp((age - 63.0) / 12.0)
    hf_base = np.clip(hf_no * age_f, 0.0, 0.5)
    effect = 1.0 - (1.0 - hf_yes) / (1.0 - hf_no)
    n = len(age)
    return {
        "liver_cancer": (np.where(cirr, lc_yes, lc_no), np.where(cirr, 0.05, 0.01)),
        "heart_failure": (1.0 - (1.0 - hf_base) * (1.0 - effect * cor),
                          np.clip(0.015 * age_f + 0.05 * cor, 0.0, 0.3)),
        "appendicitis": (np.full(n, cfg.appendicitis_4y), np.full(n, 0.02)),
    }


def _sample_outcomes(cfg: DemoCohortConfig, rng: np.random.Generator, pat: dict) -> dict:
    """First-record time of each outcome: prior (before the first study), incident (spread
    over 0-6 years after it, recorded only if before the end of follow-up) or none (-1)."""
    n, t0 = cfg.n_patients, pat["t0"]
    out = {}
    for name, (p4, p_prior) in _outcome_risks(cfg, pat).items():
        prior = rng.random(n) < p_prior
        back = rng.uniform(30.0 / 365.25, 1.0, n) * np.minimum(10.0, pat["age"] - 20.0)
        t_prior = _day(t0 - (back * YEAR_US).astype(np.int64))
        incident = ~prior & (rng.random(n) < np.minimum(1.5 * p4, 0.95))
        t_inc = _day(t0) + DAY_US + (rng.uniform(0.0, 6.0, n) * YEAR_US).astype(np.int64)
        t_inc = _day(t_inc)
        incident &= t_inc <= pat["fu_end"]
        out[name] = np.where(prior, t_prior, np.where(incident, t_inc, -1))
    return out


def _patient_events(pat: dict, first: dict, i: int, rng: np.random.Generator) -> list[tuple]:
    """All MEDS rows (time, code) of patient i, none after the end of follow-up."""
    birth, t0, end = int(pat["birth"][i]), int(pat["t0"][i]), int(pat["fu_end"][i])
    start = int(_day(max(birth + 18 * YEAR_US, t0 - int(rng.uniform(0.5, 8.0) * YEAR_US))))
    sex = "GENDER//M" if pat["male"][i] else "GENDER//F"
    rows: list[tuple] = [(birth, "MEDS_BIRTH"), (birth, sex)]

    def spread(lo: int, hi: int, k: int) -> list[int]:
        return [int(t) for t in _day(rng.integers(lo, max(hi, lo + 1), k))]

    n_enc = int(rng.poisson(2.0 * (end - start) / YEAR_US))
    last = end - int(rng.integers(0, 120)) * DAY_US if pat["admin"][i] else end
    encs = [start, int(_day(t0)), last, *spread(start, end, n_enc)]
    if pat["t1"][i] > 0:
        encs.append(int(_day(pat["t1"][i])))
    rows += [(t, "ENCOUNTER//OUTPATIENT") for t in encs]
    chronic = [(c, p * np.exp(s * (pat["age"][i] - 63.0))) for c, p, s in BACKGROUND_DX]
    chronic += [(c, f) for k, (c, f) in FINDING_DX.items() if pat[k][i]]
    for code, p in chronic:
        if rng.random() < p:
            t = spread(start, end, 1)[0]
            rows += [(s, f"ICD10CM//{code}") for s in [t, *spread(t, end, int(rng.poisson(1.5)))]]
    for name, codes in OUTCOME_CODES.items():
        t = int(first[name][i])
        if t >= 0:
            times = [t, *spread(t, end, int(rng.poisson(2.0)))]
            rows += [(s, f"ICD10CM//{codes[int(rng.integers(len(codes)))]}") for s in times]
    if pat["died"][i]:
        rows.append((end, "MEDS_DEATH"))
    return rows


def _events_table(cfg: DemoCohortConfig, pat: dict, first: dict, sids: np.ndarray) -> pa.Table:
    """MEDS_EVENTS table, sorted by subject, time, code (deterministic bytes)."""
    subj, times, codes = [], [], []
    for i in range(cfg.n_patients):
        rows = _patient_events(pat, first, i, np.random.default_rng([cfg.seed, 3, i]))
        subj += [int(sids[i])] * len(rows)
        times += [t for t, _ in rows]
        codes += [c for _, c in rows]
    subj_a, time_a, code_a = np.array(subj), np.array(times), np.array(codes)
    order = np.lexsort((code_a, time_a, subj_a))
    cols = [pa.array(subj_a[order], pa.int64()),
            pa.array(time_a[order].astype("datetime64[us]"), pa.timestamp("us")),
            pa.array(code_a[order], pa.string()),
            pa.nulls(len(order), pa.float64())]
    return pa.Table.from_arrays(cols, schema=MEDS_EVENTS.schema)


# ---------------------------------------------------------------- assembly
def _studies(pat: dict) -> list[tuple[int, int, int]]:
    """(time, patient, visit) of every study, in chronological order."""
    rows = [(int(t), i, 0) for i, t in enumerate(pat["t0"])]
    rows += [(int(t), i, 1) for i, t in enumerate(pat["t1"]) if t > 0]
    return sorted(rows)


def _write_studies(cfg: DemoCohortConfig, pat: dict, sids: np.ndarray, out: Path,
                   progress: Callable[[int], None] | None) -> tuple[pa.Table, dict[str, list[str]]]:
    """Paint, report and write every study; returns the STUDIES table and the carriers of
    each finding. Compression runs in two threads, at most a few volumes ahead."""
    grid, header = Grid.build(cfg.volume_shape), nifti_header(cfg.volume_shape, cfg.spacing_mm)
    cols: dict[str, list[Any]] = {c: [] for c in STUDIES.schema.names}
    carriers: dict[str, list[str]] = {n: [] for n in (*dr.PLANTED, *dr.INCIDENTAL)}
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for j, (t, i, visit) in enumerate(_studies(pat)):
            sid = f"S{j + 1:06d}"
            srng = np.random.default_rng([cfg.seed, 7, i, visit])
            comp = str(np.datetime64(int(pat["t0"][i]), "us").astype("datetime64[D]"))
            facts = StudyFacts.sample(
                np.random.default_rng([cfg.seed, 4, i]),  # the patient's: same at every visit
                frozenset(n for n in (*dr.PLANTED, *dr.INCIDENTAL) if pat[n][i]),
                ascites=bool(pat["ascites"][i]), contrast=bool(srng.random() < 0.85),
                comparison=comp if visit else None)
            rel = f"images/{sid}.nii.gz" if cfg.write_images else None
            if rel is not None:
                vol = paint_volume(grid, cfg.seed, i, visit, facts, cfg.noise_sigma_hu)
                pending.append(pool.submit(write_gz, out / rel, header, vol))
            for name, v in (("study_id", sid), ("subject_id", int(sids[i])), ("study_time", t),
                            ("image_path", rel), ("report_text", dr.write_report(facts, srng))):
                cols[name].append(v)
            for n in facts.findings:
                carriers[n].append(sid)
            _drain(pending, 4 if rel else 0, progress, 0 if rel else 1)
        _drain(pending, 0, progress, 0)
    times = np.array(cols.pop("study_time"), dtype="datetime64[us]")
    table = pa.Table.from_pydict({**cols, "study_time": times}, schema=STUDIES.schema)
    return table, carriers


def _drain(pending: deque[Future[None]], keep: int, progress: Callable[[int], None] | None,
           extra: int) -> None:
    """Wait for written volumes beyond `keep` (re-raising write errors) and report them."""
    done = extra
    while len(pending) > keep:
        pending.popleft().result()
        done += 1
    if progress is not None and done:
        progress(done)


def n_studies(cfg: DemoCohortConfig) -> int:
    """How many studies generate_demo_cohort will write (for a progress bar's total);
    cheap: it replays only the patient-level sampling."""
    rng = np.random.default_rng(cfg.seed)
    pat = _sample_patients(cfg, rng)
    _sample_followup(cfg, rng, pat)
    return len(_studies(pat))


def generate_demo_cohort(out_dir: Path, cfg: DemoCohortConfig = DemoCohortConfig(),
                         progress: Callable[[int], None] | None = None) -> DemoCohortPaths:
    """Write the whole demo cohort into `out_dir` and return where each part went.

    `progress(n)` is called as studies are written, with the number just finished (the
    encoders' ProgressFn convention); the calls sum to the number of studies.
    """
    out = Path(out_dir)
    paths = DemoCohortPaths(out, out / "studies.parquet", out / "events.parquet",
                            out / "outcomes.yaml", out / "truth.json", out / "images")
    paths.images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    pat = _sample_patients(cfg, rng)
    _sample_followup(cfg, rng, pat)
    first = _sample_outcomes(cfg, rng, pat)
    sids = np.arange(cfg.n_patients, dtype=np.int64) + 10_001
    studies, carriers = _write_studies(cfg, pat, sids, out, progress)
    pq.write_table(studies, paths.studies)
    pq.write_table(_events_table(cfg, pat, first, sids), paths.events)
    paths.outcomes.write_text(dr.outcomes_yaml())
    paths.truth.write_text(json.dumps(dr.truth_document(carriers, asdict(cfg)), indent=2) + "\n")
    return paths
