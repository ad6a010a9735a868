"""HTML report: an index of which concepts foretell which outcomes (Manhattan and volcano
plots, per-outcome top features with time-to-event curves, a filterable table of every
pair), and one page per notable feature.

Why static HTML: the report is what a clinical researcher opens, forwards and archives; it
has to work from a file share without a server or network and print cleanly. Inputs are
the pipeline's artifacts (ASSOCIATIONS, INTERPRETATIONS, FEATURE_STATS, SURVIVAL,
KM_CURVES) and the figure tables of `models/figures` (ReportTables); this module only
lays them out. Every patient count passes small-cell suppression (`reports/cells.py`).
Size: feature pages are written best first until `max_total_mb`, each trimmed to
`max_page_kb`; the index says what was left out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from data_contracts.config import ReportConfig
from data_contracts.report_tables import ReportTables
from reports.assets import CSS, JS, write_assets
from reports.context import UNIT_KEY, FeatureKey, ReportData, build_data, normalise_reports, page_name, with_unit
from reports.feature_page import fit_feature_page
from reports.index_sections import index_html

__all__ = ["page_name", "render_report"]


def render_report(
    out_dir: Path,
    associations: pd.DataFrame,
    interpretations: pd.DataFrame,
    feature_stats: pd.DataFrame,
    top_reports: pd.DataFrame,
    outcomes: pd.DataFrame,
    run_info: dict[str, str],
    cfg: ReportConfig,
    survival: pd.DataFrame | None = None,
    km_curves: pd.DataFrame | None = None,
    tables: ReportTables | None = None,
    methods: pd.DataFrame | None = None,
    families: pd.DataFrame | None = None,
) -> list[Path]:
    """Write `index.html`, `assets/` and `features/<modality>_[family_]<id>.html` for the
    selected page units of `tables.pages` that fit the size caps. `families`: FAMILIES rows
    with a modality column. Returns the written pages, index first."""
    out_dir = Path(out_dir)
    data = dataclasses.replace(
        build_data(associations, interpretations, feature_stats, outcomes, cfg, survival, km_curves, tables,
                   families),
        methods=methods)
    (out_dir / "features").mkdir(parents=True, exist_ok=True)
    write_assets(out_dir)
    budget = int(cfg.max_total_mb * 1e6) - len(CSS.encode()) - len(JS.encode())
    budget -= len(index_html(data, run_info, cfg).encode())  # the final index has no more links than this one
    reports = normalise_reports(top_reports)
    by_key = {_as_key(k): g for k, g in reports.groupby(UNIT_KEY, sort=False)}
    written, kept = [], []
    for key in _page_order(data):
        text = fit_feature_page(data, key, by_key.get(key, reports.iloc[:0]), run_info, cfg).encode()
        if len(text) > budget:
            break  # pages are in priority order: the rest are weaker
        budget -= len(text)
        path = out_dir / "features" / page_name(*key)
        path.write_bytes(text)
        written.append(path)
        kept.append(key)
    final = dataclasses.replace(data, pages=frozenset(kept))
    index = out_dir / "index.html"
    index.write_text(index_html(final, run_info, cfg, n_candidates=len(data.pages)), encoding="utf-8")
    return [index, *written]


def _as_key(k: Any) -> FeatureKey:
    return (str(k[0]), str(k[1]), int(k[2]))


def _page_order(d: ReportData) -> list[FeatureKey]:
    """Selected page units in the pages table's priority order."""
    p = d.tables.pages
    if p is None:
        return sorted(d.pages)
    p = with_unit(p[p["selected"]]).sort_values("priority", kind="mergesort")
    return [(str(m), str(u), int(f)) for m, u, f in zip(p["modality"], p["unit"], p["feature_id"], strict=True)]
