"""A CT volume from one DICOM file: a single slice, or an Enhanced CT multi-frame object.

MONAI's PydicomReader reads a series folder of classic slices into a 3-D volume, but turns
a single slice into a 2-D image and reads Enhanced (multi-frame) CT without its
functional groups (no geometry, no rescale to HU). Both are read here with pydicom:
rescale slope/intercept (per frame, shared or top-level) and the patient geometry
(orientation, pixel spacing, frame positions) give a (1, x, y, z) MetaTensor in HU with a
RAS affine, like the series reader's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.encoders.ct_io import CTVolumeError


def _group_attr(ds: Any, seq: str, attr: str, frame: int) -> Any:
    """`attr` of functional-group `seq` for `frame` (per-frame first, then shared), else
    the top-level attribute (classic single-frame objects), else None."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = ([per[frame]] if per is not None and len(per) > frame else []) + ([shared[0]] if shared else [])
    for g in groups:
        if seq in g and attr in g[seq][0]:
            return g[seq][0].get(attr)
    return ds.get(attr)


def _rescaled(ds: Any, frames: np.ndarray) -> np.ndarray:
    out = np.empty(frames.shape, dtype=np.float32)
    for i, f in enumerate(frames):
        slope = _group_attr(ds, "PixelValueTransformationSequence", "RescaleSlope", i)
        icpt = _group_attr(ds, "PixelValueTransformationSequence", "RescaleIntercept", i)
        out[i] = f.astype(np.float32) * float(1.0 if slope is None else slope) + float(icpt or 0.0)
    return out


def _geometry(ds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame order along the slice normal, RAS affine of the (x=columns, y=rows,
    z=sorted frames) array)."""
    iop = _group_attr(ds, "PlaneOrientationSequence", "ImageOrientationPatient", 0)
    ps = _group_attr(ds, "PixelMeasuresSequence", "PixelSpacing", 0)
    if iop is None or ps is None:
        raise CTVolumeError("DICOM file lacks ImageOrientationPatient or PixelSpacing (no geometry)")
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(r, c)
    raw = [_group_attr(ds, "PlanePositionSequence", "ImagePositionPatient", i) for i in range(n)]
    pos = np.asarray([p if p is not None else (0.0, 0.0, 0.0) for p in raw], float)
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    thick = _group_attr(ds, "PixelMeasuresSequence", "SliceThickness", 0)
    dz = float(along[order[1]] - along[order[0]]) if n > 1 else 0.0
    dz = dz or (float(thick) if thick else 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = r * float(ps[1]), c * float(ps[0]), normal * dz
    lps[:3, 3] = pos[order[0]]
    return order, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS (DICOM) -> RAS


def read_dicom_file(path: Path) -> Any:
    """(1, x, y, z) MetaTensor in HU with a RAS affine from one DICOM file."""
    import pydicom
    from monai.data import MetaTensor

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise CTVolumeError(f"DICOM file has no pixel data: {path.name}")
    pixels = np.asarray(ds.pixel_array)
    frames = pixels[None] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else pixels
    if frames.ndim != 3:  # colour or otherwise odd pixel layout
        raise CTVolumeError(f"not a grey-level CT image (pixel array shape {pixels.shape})")
    order, affine = _geometry(ds, len(frames))
    volume = _rescaled(ds, frames)[order].transpose(2, 1, 0)  # (cols, rows, frames)
    return MetaTensor(np.ascontiguousarray(volume)[None], affine=torch.from_numpy(affine))
