"""CT thumbnails of an image feature: mid-axial and mid-coronal slices of its top-activating
studies next to controls, in radiological display orientation, HU-windowed, downsampled to
square-ish pixels of equal size in millimetres and PNG-encoded.

Why: a radiologist judges an image feature by looking at the images that make it fire; the
report's text evidence alone cannot show an image concept. Volumes are read by the same code
as the CT encoders (`ct_io` through `ct_radiomics.load_ct`: NIfTI or DICOM, RAS-oriented);
an unreadable volume becomes a row with an error, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from data_contracts.config import ThumbnailConfig
from models.encoders.base import is_missing
from models.encoders.ct_io import CTVolumeError
from models.encoders.ct_radiomics import load_ct
from models.figures.png import png_grey

VIEWS = ("axial", "coronal")
COLUMNS = ["modality", "unit", "feature_id", "role", "rank", "study_id", "view", "png", "width", "height", "error"]
Loader = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]
Slice = tuple[np.ndarray, tuple[float, float]]  # image, (row, column) pixel size in mm


def mid_slices(vol: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, Slice]:
    """Display-oriented middle slices of a RAS volume (x: toward the patient's right, y:
    anterior, z: superior). Radiological convention: the patient's right on the viewer's
    left, anterior (axial) and superior (coronal) at the top."""
    _, y, z = (n // 2 for n in vol.shape)
    sx, sy, sz = spacing
    return {
        "axial": (vol[::-1, ::-1, z].T, (sy, sx)),
        "coronal": (vol[::-1, y, ::-1].T, (sz, sx)),
    }


def display_image(img: np.ndarray, pix_mm: tuple[float, float], size_px: int,
                  window: tuple[float, float]) -> np.ndarray:
    """uint8 image whose longer physical side is `size_px` pixels: box-averaged before
    linear resampling when shrinking (no aliasing of fine texture), then windowed."""
    h, w = img.shape
    mm_h, mm_w = h * pix_mm[0], w * pix_mm[1]
    px = max(mm_h, mm_w) / size_px
    out_h, out_w = max(1, round(mm_h / px)), max(1, round(mm_w / px))
    f = np.asarray(img, np.float64)
    box = (max(1, int(h / out_h)), max(1, int(w / out_w)))
    if box != (1, 1):
        f = ndimage.uniform_filter(f, size=box, mode="nearest")
    f = ndimage.zoom(f, (out_h / h, out_w / w), order=1, mode="nearest", grid_mode=True)
    lo, hi = window
    return np.rint(np.clip((f - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def ct_thumbnails(path: str, cfg: ThumbnailConfig, loader: Loader = load_ct) -> dict[str, np.ndarray]:
    """view -> uint8 thumbnail of one study. Raises CTVolumeError for an unusable image."""
    vol, spacing = loader(path)
    if vol.ndim != 3:
        raise CTVolumeError(f"not 3-D (shape {tuple(vol.shape)})")
    return {v: display_image(img, mm, cfg.size_px, cfg.hu_window) for v, (img, mm) in mid_slices(vol, spacing).items()}


Units = Iterable[int | tuple[str, int]]  # feature ids, or (unit, id) of features and families


def _unit_keys(units: Units) -> set[tuple[str, int]]:
    return {("feature", int(u)) if isinstance(u, int | np.integer) else (str(u[0]), int(u[1])) for u in units}


def pick_studies(cohorts: pd.DataFrame, units: Units, cfg: ThumbnailConfig) -> pd.DataFrame:
    """Each unit's `n_top` strongest exposed studies and first `n_control` controls (the
    cohort stage's seeded random sample, in its rank order)."""
    want = _unit_keys(units)
    c = cohorts if "unit" in cohorts.columns else cohorts.assign(unit="feature")
    keys = pd.MultiIndex.from_arrays([c["unit"].astype(str), c["feature_id"].astype("int64")])
    c = c[keys.isin(list(want))] if want else c.iloc[:0]
    top = (c["role"] == "exposed") & (c["rank"] <= cfg.n_top)
    keep = top | ((c["role"] == "control") & (c["rank"] <= cfg.n_control))
    out = c.loc[keep, ["unit", "feature_id", "role", "rank", "study_id"]]
    order = out["role"].map({"exposed": 0, "control": 1})
    return out.assign(_o=order).sort_values(["unit", "feature_id", "_o", "rank"], kind="mergesort").drop(columns="_o")


def thumbnail_table(
    modality: str,
    cohorts: pd.DataFrame,
    image_paths: Mapping[str, str | None],
    units: Units,
    cfg: ThumbnailConfig,
    loader: Loader = load_ct,
) -> pd.DataFrame:
    """THUMBNAILS rows for `units`: one per (unit, study, view). Each volume is read once
    however many units show it."""
    picks = pick_studies(cohorts, units, cfg)
    cache: dict[str, tuple[dict[str, bytes], dict[str, tuple[int, int]], str | None]] = {}
    rows = []
    for r in picks.to_dict("records"):
        sid = str(r["study_id"])
        if sid not in cache:
            cache[sid] = _encode_study(image_paths.get(sid), cfg, loader)
        pngs, shapes, error = cache[sid]
        for view in VIEWS:
            h, w = shapes.get(view, (0, 0))
            rows.append({"modality": modality, "unit": str(r["unit"]), "feature_id": int(r["feature_id"]),
                         "role": r["role"], "rank": int(r["rank"]), "study_id": sid, "view": view,
                         "png": pngs.get(view), "width": w, "height": h, "error": error})
    return pd.DataFrame(rows, columns=COLUMNS)


def _encode_study(
    path: str | None, cfg: ThumbnailConfig, loader: Loader
) -> tuple[dict[str, bytes], dict[str, tuple[int, int]], str | None]:
    if is_missing(path):
        return {}, {}, "no image"
    try:
        imgs = ct_thumbnails(str(path), cfg, loader)
    except CTVolumeError as e:
        return {}, {}, str(e)
    return {v: png_grey(a) for v, a in imgs.items()}, {v: a.shape for v, a in imgs.items()}, None
