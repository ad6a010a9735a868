"""Config of the HTML report (`report:` in the run config): which features get a page, the
size caps, small-cell suppression, identifiers and the CT thumbnails. Re-exported from
`data_contracts.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThumbnailConfig(_Strict):
    """CT thumbnails on an image feature's page: mid-axial and mid-coronal slices of its
    top-activating studies beside controls, windowed in HU and downsampled."""

    n_top: int = Field(4, ge=0, le=16)
    n_control: int = Field(2, ge=0, le=16)
    size_px: int = Field(64, ge=16, le=256)  # longer side of a thumbnail
    hu_window: tuple[float, float] = (-160.0, 240.0)  # soft tissue: level 40, width 400

    @model_validator(mode="after")
    def _window_ordered(self) -> ThumbnailConfig:
        if not self.hu_window[0] < self.hu_window[1]:
            raise ValueError(f"thumbnails.hu_window must be [low, high] with low < high, got {list(self.hu_window)}")
        return self


class FeatureRef(_Strict):
    """A unit the report gives a page: a feature, or a family (`feature_id`: its parent's id)."""

    modality: Literal["report", "image"]
    feature_id: int = Field(ge=0)
    unit: Literal["feature", "family"] = "feature"


class ReportConfig(_Strict):
    """The HTML report. Feature pages: every feature ranked for some outcome plus `pages`,
    best rank first, up to `max_feature_pages` and the size caps (the index says what was
    left out; the artifacts keep everything)."""

    top_per_outcome: int = Field(10, ge=1)
    n_top_reports: int = Field(8, ge=1)
    max_table_rows: int = Field(5000, ge=1)  # cap of the index's all-rows table
    title: str = "medconcepts report"
    # Small-cell suppression: patient counts 1..small_cell show as "<small_cell+1", and
    # shares that would reveal one are bounded; 0 turns it off. Artifacts keep exact numbers.
    small_cell: int = Field(10, ge=0)
    show_ids: bool = False  # study identifiers in the report (top reports, thumbnails)
    pages: tuple[FeatureRef, ...] = ()  # features that get a page even when not ranked
    max_feature_pages: int = Field(500, ge=0)
    feature_page_rows: int = Field(30, ge=1)  # outcomes on a page: its table and forest plot (ranked first, then by p)
    max_page_curves: int = Field(4, ge=0)  # cumulative-incidence blocks per feature page
    max_plot_points: int = Field(4000, ge=100)  # Manhattan / volcano points (the rest as bands)
    max_report_chars: int = Field(4000, ge=200)  # longer report texts are cut on the page
    max_page_kb: int = Field(150, ge=20)
    max_total_mb: float = Field(60.0, gt=0)
    histogram_bins: int = Field(30, ge=5, le=200)
    thumbnails: ThumbnailConfig = ThumbnailConfig()
