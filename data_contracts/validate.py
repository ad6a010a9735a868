"""Validation at the boundary.

Table-level problems (unreadable file, missing required column, a column that is wholly the
wrong type) raise `ContractError` naming file, column and fix. Row-level problems (duplicate
id, an unparsable value, a null key) send that row to a quarantine table with the reason;
the run goes on with the rest.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data_contracts.config import RunConfig
from data_contracts.errors import ContractError
from data_contracts.schemas import MEDS_EVENTS, QUARANTINE, STUDIES, Contract


@dataclass
class Checked:
    """Rows that passed (`data`, conformed to the contract) and rows that did not."""

    data: pd.DataFrame
    quarantine: pd.DataFrame
    ignored_columns: list[str] = dataclasses.field(default_factory=list)  # not in the contract: not read
    source_rows: np.ndarray | None = None  # row of each `data` row in the input file


def empty_quarantine() -> pd.DataFrame:
    return QUARANTINE.schema.empty_table().to_pandas()


def quarantine_rows(
    source: str, rows: np.ndarray, reason: str, column: str | None = None, study_ids: pd.Series | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": source,
            "row": pd.array(rows, dtype="Int64"),
            "study_id": (study_ids.astype("string").to_numpy() if study_ids is not None else None),
            "column": column,
            "reason": reason,
        }
    )


def read_table_file(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV/TSV input (UTF-8, with or without a byte-order mark, any line
    ends); the error says which file and why. A CSV that is not UTF-8 (e.g. Latin-1 from
    a spreadsheet export) is refused with the line of the first bad byte, not guessed."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(str(path), None, None, "file not found", "an existing parquet or CSV file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            _check_utf8(path)
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, encoding="utf-8-sig",
                               keep_default_na=False, na_values=[""])
        if suffix not in (".parquet", ".pq"):
            raise ContractError(str(path), None, None, f"file type '{suffix}'", "a .parquet, .csv or .tsv file")
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        if isinstance(e, ContractError):
            raise
        raise ContractError(str(path), None, None, f"unreadable: {e}", "a parquet or CSV file") from e


def _check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start)  # 0 is the header: data row = line - 1
        raise ContractError(
            str(path), line - 1 if line else None, None,
            f"byte 0x{data[e.start]:02x} at line {line + 1} is not UTF-8 (e.g. Latin-1 or Windows-1252 text)",
            "UTF-8 text: re-export the file as UTF-8",
        ) from e


# An offset after a clock time: "...T13:45:00+02:00", "... 13:45Z", "13:45:00.123 +0200".
_OFFSET = re.compile(r"^(.*\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$")


def _wall_clock(series: pd.Series) -> pd.Series:
    """Times as local wall-clock times, the way MEDS and hospital exports record them: a
    UTC offset, where a value has one, is dropped rather than converted, so values with
    and without offsets (two systems merged) stay on one clock."""
    if pd.api.types.is_datetime64_any_dtype(series):
        s = series.dt.tz_localize(None) if getattr(series.dt, "tz", None) is not None else series
        return s.astype("datetime64[us]")
    text = series.astype("string").str.strip().str.replace(_OFFSET, r"\1", regex=True)
    return pd.to_datetime(text, errors="coerce", format="mixed").astype("datetime64[us]")


def _coerce(series: pd.Series, typ: pa.DataType) -> pd.Series:
    """Cast to the contract type; values that cannot be cast become missing."""
    if pa.types.is_timestamp(typ):
        return _wall_clock(series)
    if pa.types.is_integer(typ):
        num = pd.to_numeric(series, errors="coerce")
        whole = num.notna() & (num == np.round(num))
        return num.where(whole).astype("Int64")
    if pa.types.is_floating(typ):
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if pa.types.is_string(typ):
        return series.astype("string")
    if pa.types.is_boolean(typ):
        return series.astype("boolean")
    return series


def _check_shape(df: pd.DataFrame, contract: Contract, file: str) -> None:
    missing = [c for c in contract.required if c not in df.columns]
    if missing:
        raise ContractError(
            file, None, missing[0], f"missing required column(s) {missing}; columns are {list(df.columns)}",
            f"columns {list(contract.required)} (see data_contracts/schemas.py: {contract.name})",
        )
    if len(df) == 0:
        raise ContractError(file, None, None, "0 rows", f"at least one row of {contract.name}")


def check_input(df: pd.DataFrame, contract: Contract, file: str) -> Checked:
    """Conform an input table to its contract, quarantining unusable rows."""
    _check_shape(df, contract, file)
    out = pd.DataFrame(index=df.index)
    bad = pd.Series(False, index=df.index)
    quarantine = [empty_quarantine()]
    sid = df["study_id"] if "study_id" in df.columns else None
    for field in contract.schema:
        if field.name not in df.columns:
            out[field.name] = _coerce(pd.Series([None] * len(df), index=df.index, dtype=object), field.type)
            continue
        raw = df[field.name]
        col = _coerce(raw, field.type)
        if pa.types.is_string(field.type) and not field.nullable:  # a blank id or code is no id or code
            col = col.where(col.str.strip() != "")
        failed = col.isna() & raw.notna()
        if failed.any():  # only values that did not parse are read as text (10 M events: seconds)
            failed[failed] = (raw[failed].astype(str).str.strip() != "").to_numpy(bool)
        if len(df) and failed.all():
            raise ContractError(
                file, 0, field.name,
                f"no value can be read as {field.type} (dtype {raw.dtype}, first value {repr(raw.iloc[0])[:40]})",
                f"a column of {field.type}",
            )
        nulls = col.isna() & ~failed
        for mask, why in ((failed, f"cannot read as {field.type}"), (nulls & (not field.nullable), "missing value")):
            mask = mask & ~bad
            if mask.any():
                quarantine.append(quarantine_rows(file, np.flatnonzero(mask.to_numpy()), why, field.name,
                                                  sid[mask] if sid is not None else None))
                bad |= mask
        out[field.name] = col
    for key in contract.unique:
        dup = out[key].duplicated(keep=False) & out[key].notna() & ~bad
        if dup.any():
            rows = np.flatnonzero(dup.to_numpy())
            quarantine.append(quarantine_rows(file, rows, f"duplicate {key}: the id must be unique", key,
                                              sid[dup] if sid is not None else None))
            bad |= dup
    if bad.all():
        first = quarantine[1].iloc[0]
        raise ContractError(file, None, None, f"all {len(df)} rows are unusable (first: {first['column']}: "
                            f"{first['reason']})", f"usable rows of {contract.name}")
    kept = out[~bad].reset_index(drop=True)
    ignored = [str(c) for c in df.columns if c not in contract.schema.names]
    return Checked(kept, pd.concat(quarantine, ignore_index=True), ignored, np.flatnonzero(~bad.to_numpy()))


def check_studies(df: pd.DataFrame, file: str) -> Checked:
    """Studies with ids stripped of surrounding blanks *before* the uniqueness check, so
    "a" and "a " are caught as duplicates rather than merged later."""
    if "study_id" in df.columns:
        ids = df["study_id"]
        df = df.assign(study_id=ids.where(ids.isna(), ids.astype(str).str.strip()))
    return check_input(df, STUDIES, file)


def resolve_image_paths(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    """Image paths made absolute: relative ones resolve against `base`, the studies
    file's folder; blank ones become missing."""
    out = df.copy()
    out["image_path"] = [absolute_image_path(p, base) for p in out["image_path"]]
    out["image_path"] = out["image_path"].astype("string")
    return out


def absolute_image_path(p: object, base: Path | None) -> str | None:
    """A stored image path made absolute: relative ones against `base`; blank: None."""
    if not isinstance(p, str) or not p.strip():
        return None
    q = Path(p.strip())
    if q.is_absolute():
        return str(q)
    if base is None:
        raise ValueError(f"relative image path {p!r} and no folder to resolve it against")
    return str((base / q).resolve())


ESCAPES = ("image path leaves the studies file's folder (through '..' or a symbolic link); relative "
           "paths must stay inside it: give an absolute path, or move the image under the folder")


def check_image_paths(checked: Checked, base: Path, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Image paths as written (trimmed; blank -> missing), so the studies artifact does not
    depend on where the input folder lies. A relative path that resolves outside `base`
    (via '..' or a symlink) is cleared and its row quarantined with the reason: the study
    stays for its report, the image modality then lists it as having no image."""
    df = checked.data.copy()
    paths = [p.strip() if isinstance(p, str) and p.strip() else None for p in df["image_path"]]
    root = base.resolve()
    escapes = np.array([p is not None and not Path(p).is_absolute() and not (root / p).resolve().is_relative_to(root)
                        for p in paths], dtype=bool)
    df["image_path"] = pd.array([None if e else p for p, e in zip(paths, escapes, strict=True)], dtype="string")
    rows = checked.source_rows if checked.source_rows is not None else np.arange(len(df))
    q = quarantine_rows(file, rows[escapes], ESCAPES, "image_path", df["study_id"][escapes])
    return df, q


def check_events(df: pd.DataFrame, file: str, birth_code: str = "MEDS_BIRTH",
                 death_code: str = "MEDS_DEATH") -> Checked:
    """MEDS events conformed to the contract. Beyond types, rows the patient's own timeline
    rules out are quarantined: events dated before the birth day or after the death day
    (the earliest birth / death record counts). Exact repeats stay: two encounters on one
    day are real, and repeats change no label (first onset, last record)."""
    checked = check_input(df, MEDS_EVENTS, file)
    ev = checked.data
    rows = checked.source_rows if checked.source_rows is not None else np.arange(len(ev))
    day = ev["time"].dt.normalize()
    first = {c: ev.loc[ev["code"] == c].groupby("subject_id")["time"].min().dt.normalize()
             for c in (birth_code, death_code)}
    rules = [
        ((day < ev["subject_id"].map(first[birth_code])).to_numpy(bool),
         f"dated before the patient's birth ({birth_code})", "time"),
        ((day > ev["subject_id"].map(first[death_code])).to_numpy(bool),
         f"dated after the patient's death ({death_code})", "time"),
    ]
    bad = np.zeros(len(ev), dtype=bool)
    frames = [checked.quarantine]
    for mask, why, column in rules:
        mask = mask & ~bad
        if mask.any():
            frames.append(quarantine_rows(file, rows[mask], why, column))
            bad |= mask
    if not bad.any():
        return checked
    return Checked(ev[~bad].reset_index(drop=True), pd.concat(frames, ignore_index=True), checked.ignored_columns,
                   rows[~bad])


def conform_table(data: pd.DataFrame | pa.Table, contract: Contract, source: str) -> pa.Table:
    """Cast an artifact table to its contract schema exactly (column order and types);
    a missing or un-castable column is a programming error and raises with its name."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    missing = [c for c in contract.required if c not in table.column_names]
    if missing:
        raise ContractError(source, None, missing[0], f"missing column(s) {missing}", f"contract {contract.key}")
    arrays = []
    for field in contract.schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ContractError(source, None, field.name, f"type {col.type}: {e}", str(field.type)) from e
            if not field.nullable and col.null_count:
                raise ContractError(source, None, field.name, f"{col.null_count} null value(s)", "no nulls")
        else:
            col = pa.nulls(table.num_rows, field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=contract.schema)


def check_input_files(cfg: RunConfig, path: str | Path) -> None:
    """Every input the run config names exists (checked before anything starts)."""
    for name in ("studies", "events", "outcomes"):
        p = Path(getattr(cfg.inputs, name))
        if not p.is_file():
            raise ContractError(str(path), None, f"inputs.{name}", f"no such file: {p}",
                                "an existing file (relative paths resolve against the config's folder)")
