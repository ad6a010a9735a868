"""All report tables of a run from its artifact tables (no I/O but reading CT volumes for
the thumbnails)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import pandas as pd

from data_contracts.config import ReportConfig
from data_contracts.report_tables import ReportTables
from models.figures.association_plots import fdr_cuts, forest_rows, manhattan_points
from models.figures.histograms import COLUMNS as HIST_COLUMNS
from models.figures.histograms import activation_histograms
from models.figures.pages import page_features
from models.figures.thumbnails import Loader, load_ct, thumbnail_table

IMAGE = "image"  # the CT modality: its pages get thumbnails


def report_tables(
    assoc: pd.DataFrame,
    cfg: ReportConfig,
    alpha: float,
    feature_stats: Mapping[str, pd.DataFrame] | None = None,
    activations: Mapping[str, pd.DataFrame] | None = None,
    cohorts: Mapping[str, pd.DataFrame] | None = None,
    image_paths: Mapping[str, str | None] | None = None,
    loader: Loader = load_ct,
    families: Mapping[str, Families] | None = None,
) -> ReportTables:
    """assoc: ASSOCIATIONS rows (both splits); per modality: FEATURE_STATS, ACTIVATIONS,
    COHORTS rows and its feature families (FAMILIES rows, FAMILY_ACTIVATIONS rows);
    image_paths: study_id -> CT path. Histograms need stats and activations, thumbnails the
    image modality's cohorts and paths; without them those tables are None."""
    fams = families or {}
    members = family_members(fams)
    pages = page_features(assoc, ((p.modality, p.unit, p.feature_id) for p in cfg.pages), cfg.max_feature_pages,
                          members)
    chosen = pages[pages["selected"]]
    hists = None
    if feature_stats is not None and activations is not None:
        hists = _histograms(chosen, feature_stats, activations, fams, cfg.histogram_bins)
    thumbs = None
    if cohorts is not None and image_paths is not None and IMAGE in cohorts:
        mine = chosen[chosen["modality"] == IMAGE]
        units = list(zip(mine["unit"].astype(str), mine["feature_id"].astype(int), strict=True))
        thumbs = thumbnail_table(IMAGE, cohorts[IMAGE], image_paths, units, cfg.thumbnails, loader)
    keys = list(zip(chosen["modality"], chosen["unit"], chosen["feature_id"].astype(int), strict=True))
    return ReportTables(
        pages=pages,
        histograms=hists,
        manhattan=manhattan_points(assoc, cfg.max_plot_points),
        fdr_cuts=fdr_cuts(assoc, alpha),
        forest=forest_rows(assoc, keys, cfg.feature_page_rows, members),
        thumbnails=thumbs,
    )


class Families(NamedTuple):
    """One modality's feature families: FAMILIES rows and FAMILY_ACTIVATIONS rows."""

    families: pd.DataFrame
    activations: pd.DataFrame | None = None


def family_members(families: Mapping[str, Families]) -> dict[tuple[str, int], list[int]]:
    """(modality, family_id) -> member feature ids, parent first."""
    return {(str(m), int(r["family_id"])): [int(x) for x in (r["members"] if r["members"] is not None else ())]
            for m, f in families.items() for r in f.families.to_dict("records")}


def _histograms(chosen: pd.DataFrame, stats: Mapping[str, pd.DataFrame], acts: Mapping[str, pd.DataFrame],
                families: Mapping[str, Families], n_bins: int) -> pd.DataFrame:
    frames = []
    for (m, unit), g in chosen.groupby(["modality", "unit"], sort=True):
        m, unit = str(m), str(unit)
        fam = families.get(m)
        fam_acts = None if fam is None or fam.activations is None else fam.activations
        values = acts.get(m) if unit == "feature" else (
            None if fam_acts is None else fam_acts.rename(columns={"family_id": "feature_id"}))
        if values is not None and m in stats:
            frames.append(activation_histograms(m, values, stats[m], g["feature_id"].astype(int), n_bins, unit))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HIST_COLUMNS)
