"""Merlin's CT preprocessing, transform for transform (MONAI), so that vectors computed
here match those of Merlin's released pipeline:

    LoadImage (channel first) -> Orientation RAS -> Spacing 1.5 x 1.5 x 3 mm (bilinear)
    -> ScaleIntensityRange HU -1000..1000 to 0..1, clipped -> SpatialPad to 224x224x160
    (zeros, i.e. air after scaling) -> CenterSpatialCrop 224x224x160

The first two steps are `ct_io.load_ct_image`. Volumes are checked before the transforms
(3-D, finite, not constant, Hounsfield units) and after (exact output shape); failures are
`CTVolumeError`s that become quarantine rows.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

from models.encoders.base import is_missing
from models.encoders.ct_io import CTVolumeError, check_ct_volume, load_ct_image

SPACING_MM = (1.5, 1.5, 3.0)
HU_WINDOW = (-1000.0, 1000.0)
ROI = (224, 224, 160)
PREPROCESSING: dict[str, object] = {
    "reader": "monai.LoadImage(nibabel|pydicom), channel first",
    "orientation": "RAS",
    "spacing_mm": list(SPACING_MM),
    "interpolation": "bilinear",
    "hu_window": list(HU_WINDOW),
    "scaled_to": [0.0, 1.0],
    "clip": True,
    "pad_then_center_crop": list(ROI),
}
_ItemResult = tuple[np.ndarray | None, str | None]


@functools.cache
def _transforms() -> Any:
    from monai.transforms import CenterSpatialCrop, Compose, ScaleIntensityRange, Spacing, SpatialPad

    return Compose([
        Spacing(pixdim=SPACING_MM, mode="bilinear"),
        ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        SpatialPad(spatial_size=list(ROI)),
        CenterSpatialCrop(roi_size=list(ROI)),
    ])


def merlin_preprocess(image: Any) -> np.ndarray:
    """(1, 224, 224, 160) float32 in [0, 1] from a RAS-oriented channel-first MetaTensor
    in HU (affine attached, as `load_ct_image` returns it)."""
    raw = np.asarray(image[0])
    check_ct_volume(raw, min_axis=1)  # a single slice is a (thin) volume; Spacing handles it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="monai")
        out = _transforms()(image)
    arr = np.asarray(out, dtype=np.float32)
    if arr.shape != (1, *ROI):
        raise CTVolumeError(f"wrong shape after preprocessing: {arr.shape}, expected {(1, *ROI)}")
    if not np.isfinite(arr).all():
        raise CTVolumeError("non-finite values after preprocessing")
    return arr


def preprocess_path(item: str | None) -> _ItemResult:
    """(volume, None) or (None, reason) for one study's image; never raises for bad data.
    Top-level so that it can run in a process pool."""
    if is_missing(item):
        return None, "no image"
    try:
        return merlin_preprocess(load_ct_image(str(item))), None
    except CTVolumeError as e:
        return None, str(e)
