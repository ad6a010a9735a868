"""All report tables of a run from its artifact tables (no I/O but reading CT volumes for
the thumbnails)."""

from __future__ import annotations

from collections.abc import Mapping

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
) -> ReportTables:
    """assoc: ASSOCIATIONS rows (both splits); per modality: FEATURE_STATS, ACTIVATIONS and
    COHORTS rows; image_paths: study_id -> CT path. Histograms need stats and activations,
    thumbnails the image modality's cohorts and paths; without them those tables are None."""
    pages = page_features(assoc, ((p.modality, p.feature_id) for p in cfg.pages), cfg.max_feature_pages)
    chosen = pages[pages["selected"]]
    by_mod = {str(m): g["feature_id"].astype(int).tolist() for m, g in chosen.groupby("modality")}
    hists = None
    if feature_stats is not None and activations is not None:
        frames = [activation_histograms(m, activations[m], feature_stats[m], feats, cfg.histogram_bins)
                  for m, feats in by_mod.items() if m in activations and m in feature_stats]
        hists = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HIST_COLUMNS)
    thumbs = None
    if cohorts is not None and image_paths is not None and IMAGE in cohorts:
        thumbs = thumbnail_table(IMAGE, cohorts[IMAGE], image_paths, by_mod.get(IMAGE, []), cfg.thumbnails, loader)
    keys = list(zip(chosen["modality"], chosen["feature_id"].astype(int), strict=True))
    return ReportTables(
        pages=pages,
        histograms=hists,
        manhattan=manhattan_points(assoc, cfg.max_plot_points),
        fdr_cuts=fdr_cuts(assoc, alpha),
        forest=forest_rows(assoc, keys, cfg.max_page_rows),
        thumbnails=thumbs,
    )
