"""Validation at the boundary.

Table-level problems (unreadable file, missing required column, a column that is wholly the
wrong type) raise `ContractError` naming file, column and fix. Row-level problems (duplicate
id, an unparsable value, a null key) send that row to a quarantine table with the reason;
the run goes on with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data_contracts.errors import ContractError
from data_contracts.schemas import MEDS_EVENTS, QUARANTINE, STUDIES, Contract


@dataclass
class Checked:
    """Rows that passed (`data`, conformed to the contract) and rows that did not."""

    data: pd.DataFrame
    quarantine: pd.DataFrame


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
    """Read a parquet or CSV input; the error says which file and why."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(str(path), None, None, "file not found", "an existing parquet or CSV file")
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                               keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ContractError(str(path), None, None, f"unreadable: {e}", "a parquet or CSV file") from e


def _coerce(series: pd.Series, typ: pa.DataType) -> pd.Series:
    """Cast to the contract type; values that cannot be cast become missing."""
    if pa.types.is_timestamp(typ):
        if pd.api.types.is_datetime64_any_dtype(series):
            s = series.dt.tz_convert(None) if getattr(series.dt, "tz", None) is not None else series
            return s.astype("datetime64[us]")
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
        return parsed.dt.tz_convert(None).astype("datetime64[us]")
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


def check_input(df: pd.DataFrame, contract: Contract, file: str) -> Checked:
    """Conform an input table to its contract, quarantining unusable rows."""
    missing = [c for c in contract.required if c not in df.columns]
    if missing:
        raise ContractError(
            file, None, missing[0], f"missing required column(s) {missing}; columns are {list(df.columns)}",
            f"columns {list(contract.required)} (see data_contracts/schemas.py: {contract.name})",
        )
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
        failed = col.isna() & raw.notna()
        if failed.any():  # only values that did not parse are read as text (10 M events: seconds)
            failed[failed] = raw[failed].astype(str).str.strip() != ""
        if len(df) and failed.all():
            raise ContractError(
                file, 0, field.name,
                f"no value can be read as {field.type} (dtype {raw.dtype}, first value {raw.iloc[0]!r})",
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
    kept = out[~bad].reset_index(drop=True)
    return Checked(kept, pd.concat(quarantine, ignore_index=True))


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

    def absolute(p: object) -> object:
        if not isinstance(p, str) or not p.strip():
            return None
        q = Path(p.strip())
        return str(q if q.is_absolute() else (base / q).resolve())

    out = df.copy()
    out["image_path"] = out["image_path"].map(absolute).astype("string")
    return out


def check_events(df: pd.DataFrame, file: str) -> Checked:
    return check_input(df, MEDS_EVENTS, file)


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
