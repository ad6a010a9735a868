"""The bad-input corpus: every case is generated here from a small clean cohort (nothing
checked in), with the outcome the product documents for it.

Outcomes:
- "error": a ContractError naming the file, the row (None where a row does not apply), the
  column or config field, what was found and what is expected; nothing is written.
- "quarantine": the run goes on; the named rows are in the artifact's quarantine table with
  the column and a reason, every other row is in the data (nothing silently dropped).
- "flag": the rows are kept and carry a flag saying what is wrong (outcome labels).
- "accepted": a form the product reads correctly (BOM, wall-clock times, null static times).
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd

Target = Literal["studies", "images", "events", "outcomes", "config"]
Expect = Literal["error", "quarantine", "flag", "accepted"]

OUTCOMES_YAML = ("outcomes:\n"
                 "  - {id: liver_cancer, name: Liver cancer, codes: ['ICD10CM//C22']}\n"
                 "  - {id: heart_failure, name: Heart failure, codes: ['ICD10CM//I50'], window_years: 4}\n")


@dataclass(frozen=True)
class Base:
    """The clean inputs every case starts from."""

    root: Path
    studies: pd.DataFrame  # study_id, subject_id, study_time, image_path, report_text
    events: pd.DataFrame


@dataclass(frozen=True)
class Case:
    id: str
    target: Target
    expect: Expect
    make: Callable[[Base, Path], Path]  # writes the bad input under the folder, returns its path
    column: str | None = None  # error: the column / field named; quarantine/flag: the column
    row: int | None = None  # error: the row named; quarantine/flag: the input row (or study row)
    match: str = ""  # text in the error's `found`, the quarantine reason or the flag
    note: str = ""  # the documented outcome, for the closing note


# ---------------------------------------------------------------- writers
def _studies(base: Base, d: Path, edit: Callable[[pd.DataFrame], pd.DataFrame], name: str = "studies.parquet",
             images: bool = False) -> Path:
    """The clean studies edited; a column of mixed types goes to CSV (as exports do: parquet
    cannot hold it)."""
    df = edit(base.studies.copy() if images else base.studies.drop(columns="image_path"))
    if any(df[c].map(type).nunique() > 1 for c in df.columns if df[c].dtype == object and c != "report_text"):
        name = name.replace(".parquet", ".csv")
    path = d / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return path


def _events(base: Base, d: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    ev = edit(base.events.copy())
    if ev["time"].dtype == object:  # mixed types: a CSV export
        ev.to_csv(d / "events.csv", index=False)
        return d / "events.csv"
    ev.to_parquet(d / "events.parquet")
    return d / "events.parquet"


def _text(d: Path, name: str, text: str | bytes) -> Path:
    p = d / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _set(df: pd.DataFrame, row: int, col: str, value: object) -> pd.DataFrame:
    df[col] = df[col].astype(object)
    df.at[row, col] = value
    return df


def _volume(path: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))


def _ct(rng: np.random.Generator, shape: tuple[int, ...] = (16, 16, 12)) -> np.ndarray:
    vol = rng.normal(40, 20, shape).astype(np.float32)
    vol[:2] = -1000.0  # air around the body, as a CT has
    return vol


def _dicom_series(folder: Path, n: int, uid: str, modality: str = "CT", start: int = 0) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.Modality = modality
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{start + k + 1}"
        ds.InstanceNumber = start + k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(3 * (start + k))]
        ds.save_as(folder / f"slice{start + k:03d}.dcm")


def _image_case(bad: Callable[[Path, np.random.Generator], str | None]) -> Callable[[Base, Path], Path]:
    """Two studies beside their images: a good volume and the bad one `bad` writes
    (returning the image_path to put in the table)."""

    def make(base: Base, d: Path) -> Path:
        rng = np.random.default_rng(5)
        (d / "images").mkdir(exist_ok=True)
        _volume(d / "images" / "good.nii.gz", _ct(rng))
        rows = base.studies.iloc[:2].copy().reset_index(drop=True)
        rows["image_path"] = ["images/good.nii.gz", bad(d / "images", rng)]
        rows.to_parquet(d / "studies.parquet")
        return d / "studies.parquet"

    return make


def _truncated(folder: Path, rng: np.random.Generator) -> str:
    _volume(folder / "t.nii.gz", _ct(rng))
    data = (folder / "t.nii.gz").read_bytes()
    (folder / "t.nii.gz").write_bytes(data[: len(data) // 2])
    return "images/t.nii.gz"


def _nan_voxels(folder: Path, rng: np.random.Generator) -> str:
    vol = _ct(rng)
    vol[5, 5, 5] = np.nan
    _volume(folder / "nan.nii.gz", vol)
    return "images/nan.nii.gz"


def _two_d(folder: Path, rng: np.random.Generator) -> str:
    _volume(folder / "flat.nii.gz", _ct(rng, (16, 16)))
    return "images/flat.nii.gz"


def _empty_file(folder: Path, rng: np.random.Generator) -> str:
    (folder / "empty.nii.gz").write_bytes(b"")
    return "images/empty.nii.gz"


def _not_gzip(folder: Path, rng: np.random.Generator) -> str:
    (folder / "text.nii.gz").write_bytes(gzip.compress(b"this is not a NIfTI header at all") + b"junk")
    return "images/text.nii.gz"


def _mr_series(folder: Path, rng: np.random.Generator) -> str:
    _dicom_series(folder / "mr", 9, "1.2.3.4.1", modality="MR")
    return "images/mr"


def _mixed_series(folder: Path, rng: np.random.Generator) -> str:
    _dicom_series(folder / "mixed", 9, "1.2.3.4.2")
    _dicom_series(folder / "mixed", 9, "1.2.3.4.3", start=9)
    return "images/mixed"


def _empty_folder(folder: Path, rng: np.random.Generator) -> str:
    (folder / "nothing").mkdir()
    return "images/nothing"


def _escape_dots(base: Base, d: Path) -> Path:
    inner = d / "input"
    (inner / "images").mkdir(parents=True)
    _volume(d / "outside.nii.gz", _ct(np.random.default_rng(1)))
    rows = base.studies.iloc[:3].copy().reset_index(drop=True)
    rows["image_path"] = [None, "../outside.nii.gz", "images/../images/../../outside.nii.gz"]
    rows.to_parquet(inner / "studies.parquet")
    return inner / "studies.parquet"


def _escape_symlink(base: Base, d: Path) -> Path:
    inner = d / "input"
    (inner / "images").mkdir(parents=True)
    _volume(d / "outside.nii.gz", _ct(np.random.default_rng(1)))
    (inner / "images" / "link.nii.gz").symlink_to(d / "outside.nii.gz")
    rows = base.studies.iloc[:2].copy().reset_index(drop=True)
    rows["image_path"] = [None, "images/link.nii.gz"]
    rows.to_parquet(inner / "studies.parquet")
    return inner / "studies.parquet"


def _bom_crlf(base: Base, d: Path) -> Path:
    df = base.studies.drop(columns="image_path").iloc[:5]
    text = df.to_csv(index=False, lineterminator="\r\n")
    return _text(d, "studies.csv", b"\xef\xbb\xbf" + text.encode())


def _latin1(base: Base, d: Path) -> Path:
    df = base.studies.drop(columns="image_path").iloc[:5].copy()
    df["report_text"] = "plain text"
    df.loc[3, "report_text"] = "Befund: Leberl\u00e4sion, caf\u00e9"
    return _text(d, "studies.csv", df.to_csv(index=False).encode("latin-1"))


def _header_only(base: Base, d: Path) -> Path:
    return _text(d, "studies.csv", "study_id,subject_id,study_time,report_text\n")


def _mixed_tz(df: pd.DataFrame) -> pd.DataFrame:
    df = df.iloc[:3].copy()
    df["study_time"] = ["2016-03-01 10:00", "2016-03-02T10:00:00+02:00", "2016-03-03T22:30:00Z"]
    return df


def _outcomes(body: str) -> Callable[[Base, Path], Path]:
    return lambda base, d: _text(d, "outcomes.yaml", body)


def _config(edit: str, drop_events: bool = False) -> Callable[[Base, Path], Path]:
    def make(base: Base, d: Path) -> Path:
        base.studies.drop(columns="image_path").to_parquet(d / "studies.parquet")
        if not drop_events:
            base.events.to_parquet(d / "events.parquet")
        _text(d, "outcomes.yaml", OUTCOMES_YAML)
        body = ("store: store\ninputs: {studies: studies.parquet, events: events.parquet, outcomes: outcomes.yaml}\n"
                "modalities:\n  - {modality: report, encoder: {name: minilm}}\n" + edit)
        return _text(d, "run.yaml", body)

    return make


def _subject_event(subject: int, when: str | None, code: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(ev: pd.DataFrame) -> pd.DataFrame:
        row = pd.DataFrame({"subject_id": [subject], "time": [pd.Timestamp(when) if when else pd.NaT],
                            "code": [code], "numeric_value": [np.nan]})
        return pd.concat([ev, row.astype(ev.dtypes.to_dict())], ignore_index=True)

    return edit


def _no_birth_sex(subject: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(ev: pd.DataFrame) -> pd.DataFrame:
        drop = (ev["subject_id"] == subject) & ev["code"].isin(["MEDS_BIRTH", "GENDER//F", "GENDER//M"])
        return ev[~drop].reset_index(drop=True)

    return edit


def _copy(src: Path, d: Path) -> Path:
    shutil.copy(src, d / src.name)
    return d / src.name


# ---------------------------------------------------------------- the cases
def _id_dup(df: pd.DataFrame) -> pd.DataFrame:
    return _set(df, 2, "study_id", df.at[1, "study_id"])


S, IM, E, OUT, C = "studies", "images", "events", "outcomes", "config"
ESC = "leaves the studies file's folder"
CASES: list[Case] = [
    # -- studies table
    Case("studies-duplicate-id", S, "quarantine", lambda b, d: _studies(b, d, _id_dup), "study_id", 2,
         "duplicate study_id", "both rows quarantined: which one is right cannot be told"),
    Case("studies-blank-id", S, "quarantine", lambda b, d: _studies(b, d, lambda x: _set(x, 3, "study_id", "   ")),
         "study_id", 3, "missing value"),
    Case("studies-null-id", S, "quarantine", lambda b, d: _studies(b, d, lambda x: _set(x, 4, "study_id", None)),
         "study_id", 4, "missing value"),
    Case("studies-missing-column", S, "error",
         lambda b, d: _studies(b, d, lambda x: x.drop(columns="subject_id")), "subject_id", None,
         "missing required column"),
    Case("studies-extra-columns", S, "accepted",
         lambda b, d: _studies(b, d, lambda x: x.assign(mrn="x", ward=1)), None, None, "",
         "read; the columns not in the contract are named in the manifest (ignored_columns) and a warning"),
    Case("studies-unparseable-time", S, "quarantine",
         lambda b, d: _studies(b, d, lambda x: _set(x.astype({"study_time": object}), 5, "study_time", "last tuesday")),
         "study_time", 5, "cannot read as timestamp"),
    Case("studies-time-out-of-range", S, "quarantine",
         lambda b, d: _studies(b, d, lambda x: _set(x.astype({"study_time": object}), 6, "study_time", "3024-01-01")),
         "study_time", 6, "cannot read as timestamp"),
    Case("studies-tz-aware-mixed-with-naive", S, "accepted", lambda b, d: _studies(b, d, _mixed_tz, "s.csv"),
         None, None, "", "read as wall-clock times: offsets dropped, not converted"),
    Case("studies-future-time", S, "flag",
         lambda b, d: _studies(b, d, lambda x: _set(x, 7, "study_time", pd.Timestamp("2090-01-01"))),
         None, 7, "study after the end of the data", "kept; labels flag it and it is not eligible"),
    Case("studies-subject-ids-as-strings", S, "error",
         lambda b, d: _studies(b, d, lambda x: x.assign(subject_id="P" + x["subject_id"].astype(str))),
         "subject_id", 0, "no value can be read as int64"),
    Case("studies-one-subject-id-not-a-number", S, "quarantine",
         lambda b, d: _studies(b, d, lambda x: _set(x, 8, "subject_id", "abc")), "subject_id", 8,
         "cannot read as int64"),
    Case("studies-fractional-subject-id", S, "quarantine",
         lambda b, d: _studies(b, d, lambda x: _set(x.astype({"subject_id": float}), 9, "subject_id", 3.5)),
         "subject_id", 9, "cannot read as int64"),
    Case("studies-zero-rows", S, "error", _header_only, None, None, "0 rows"),
    Case("studies-every-row-unusable", S, "error",
         lambda b, d: _studies(b, d, lambda x: x.assign(study_time="never")), "study_time", 0,
         "no value can be read as timestamp"),
    Case("studies-bom-crlf-csv", S, "accepted", _bom_crlf, None, None, "", "read like the clean table"),
    Case("studies-latin1-bytes", S, "error", _latin1, None, 3, "is not UTF-8",
         "refused at the row of the first non-UTF-8 byte; not guessed"),
    Case("studies-2mb-report", S, "accepted",
         lambda b, d: _studies(b, d, lambda x: _set(x, 1, "report_text", "liver lesion. " * 150_000)),
         None, None, "", "kept whole; encoders truncate to their max length, the report shows an excerpt"),
    Case("studies-html-js-in-text", S, "accepted",
         lambda b, d: _studies(b, d, lambda x: _set(x, 1, "report_text", "<script>alert(1)</script><img src=x "
                                                    "onerror=alert(2)> <a href='javascript:alert(3)'>x</a>")),
         None, None, "", "kept verbatim; the report escapes it"),
    Case("studies-path-escapes-via-dotdot", S, "quarantine", _escape_dots, "image_path", 1, ESC,
         "the study stays (report), its image path is cleared and the row quarantined"),
    Case("studies-path-escapes-via-symlink", S, "quarantine", _escape_symlink, "image_path", 1, ESC),
    Case("studies-file-missing", S, "error", lambda b, d: d / "nope.parquet", None, None, "file not found"),
    Case("studies-not-parquet", S, "error", lambda b, d: _text(d, "studies.parquet", b"PK\x03\x04 a zip, not parquet"),
         None, None, "unreadable"),
    Case("studies-unsupported-type", S, "error", lambda b, d: _text(d, "studies.xlsx", b"PK"), None, None,
         "file type"),
    # -- images (ct_radiomics encoder; quarantine rows of the embeddings artifact, row = study)
    Case("image-missing", IM, "quarantine", _image_case(lambda f, r: "images/absent.nii.gz"), "image_path", 1,
         "image not found"),
    Case("image-no-path", IM, "quarantine", _image_case(lambda f, r: None), "image_path", 1, "no image"),
    Case("image-empty-file", IM, "quarantine", _image_case(_empty_file), "image_path", 1, "unreadable image"),
    Case("image-truncated", IM, "quarantine", _image_case(_truncated), "image_path", 1, "unreadable image"),
    Case("image-not-nifti", IM, "quarantine", _image_case(_not_gzip), "image_path", 1, "unreadable image"),
    Case("image-2d", IM, "quarantine", _image_case(_two_d), "image_path", 1, "not 3-D"),
    Case("image-nan-voxels", IM, "quarantine", _image_case(_nan_voxels), "image_path", 1, "non-finite"),
    Case("image-non-ct-dicom", IM, "quarantine", _image_case(_mr_series), "image_path", 1, "DICOM Modality is 'MR'"),
    Case("image-mixed-series-in-folder", IM, "quarantine", _image_case(_mixed_series), "image_path", 1,
         "holds 2 DICOM series"),
    Case("image-empty-dicom-folder", IM, "quarantine", _image_case(_empty_folder), "image_path", 1,
         "folder is empty"),
    # -- MEDS events
    Case("meds-subject-id-strings", E, "error",
         lambda b, d: _events(b, d, lambda e: e.assign(subject_id="p" + e["subject_id"].astype(str))),
         "subject_id", 0, "no value can be read as int64"),
    Case("meds-time-as-text", E, "quarantine",
         lambda b, d: _events(b, d, lambda e: _set(e.astype({"time": object}), 10, "time", "yesterday")),
         "time", 10, "cannot read as timestamp"),
    Case("meds-null-code", E, "quarantine", lambda b, d: _events(b, d, lambda e: _set(e, 11, "code", None)),
         "code", 11, "missing value"),
    Case("meds-null-time-static-codes", E, "accepted",
         lambda b, d: _events(b, d, lambda e: e.assign(time=e["time"].where(~e["code"].str.startswith("GENDER")))),
         None, None, "", "static codes (sex) without time are read"),
    Case("meds-undated-outcome-record", E, "flag",
         lambda b, d: _events(b, d, _subject_event(int(b.studies.at[0, "subject_id"]), None, "ICD10CM//I50.9")),
         None, 0, "outcome recorded without a date", "counted as prior: not eligible for that outcome"),
    Case("meds-event-before-birth", E, "quarantine",
         lambda b, d: _events(b, d, _subject_event(int(b.studies.at[0, "subject_id"]), "1901-01-01", "ICD10CM//I10")),
         "time", -1, "before the patient's birth"),
    Case("meds-event-after-death", E, "quarantine",
         lambda b, d: _events(b, d, lambda e: _subject_event(
             int(e.loc[e["code"] == "MEDS_DEATH", "subject_id"].iloc[0]), "2099-01-01", "ICD10CM//I50.9")(e)),
         "time", -1, "after the patient's death"),
    Case("meds-duplicate-rows", E, "accepted",
         lambda b, d: _events(b, d, lambda e: pd.concat([e, e[~e["code"].str.startswith("ENC")]], ignore_index=True)),
         None, None, "", "kept (two same-day encounters are real); labels equal those of the de-duplicated table"),
    Case("meds-study-subject-unknown", E, "flag",
         lambda b, d: _events(b, d, lambda e: e[e["subject_id"] != int(b.studies.at[2, "subject_id"])]),
         None, 2, "no MEDS events for the patient", "kept, flagged; no follow-up: not a control"),
    Case("meds-no-birth-or-sex", E, "flag",
         lambda b, d: _events(b, d, _no_birth_sex(int(b.studies.at[3, "subject_id"]))), None, 3,
         "no birth record;no sex record", "kept, flagged; left out of age/sex-adjusted models"),
    Case("meds-zero-rows", E, "error", lambda b, d: _events(b, d, lambda e: e.iloc[:0]), None, None, "0 rows"),
    # -- outcome definitions
    Case("outcomes-unknown-key", OUT, "error",
         _outcomes("outcomes:\n  - {id: hf, name: HF, codes: ['ICD10CM//I50'], windw_years: 2}\n"),
         "outcomes.windw_years", 0, "Extra inputs are not permitted"),
    Case("outcomes-empty-code-list", OUT, "error", _outcomes("outcomes:\n  - {id: hf, name: HF, codes: []}\n"),
         "outcomes.codes", 0, "at least 1 item"),
    Case("outcomes-blank-code", OUT, "error", _outcomes("outcomes:\n  - {id: hf, name: HF, codes: ['  ']}\n"),
         "outcomes.codes", 0, "matches every code"),
    Case("outcomes-duplicate-ids", OUT, "error",
         _outcomes("outcomes:\n  - {id: hf, name: A, codes: ['X']}\n  - {id: hf, name: B, codes: ['Y']}\n"),
         "outcomes", None, "must be unique"),
    Case("outcomes-codes-match-nothing", OUT, "flag",
         _outcomes("outcomes:\n  - {id: nothing, name: Nothing, codes: ['ICD10CM//Z99.99']}\n"), None, None, "",
         "labels without events; every association row of the outcome is flagged 'outcome has no cases'"),
    Case("outcomes-invalid-yaml", OUT, "error", _outcomes("outcomes: [ {id: hf\n"), None, None, "invalid YAML"),
    # -- run config
    Case("config-missing-input-file", C, "error", _config("", drop_events=True), "inputs.events", None,
         "no such file"),
    Case("config-percentile-100", C, "error", _config("cohort: {percentile: 100}\n"), "cohort.percentile", None,
         "less than 100"),
    Case("config-k-not-below-n", C, "error", _config("sae: {n_features: 16, k: 16}\n"), "sae", None,
         "must be smaller than sae.n_features"),
    Case("config-unknown-key", C, "error", _config("cohrt: {percentile: 90}\n"), "cohrt", None,
         "Extra inputs are not permitted"),
    Case("config-binary-controls-typo", C, "error", _config("association: {binary_controls: complete}\n"),
         "association.binary_controls", None, "complete_followup"),
]
