"""Reading CT studies for every image encoder: a NIfTI file or a DICOM series folder,
through MONAI's LoadImage (nibabel / pydicom readers), channel first, oriented to RAS.

Problems with the data (missing, empty folder, unreadable, not a CT, not 3-D) raise
`CTVolumeError` with a short reason, which encoders turn into a quarantine row.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.filebasedimages import ImageFileError

# What readers raise on corrupt or odd files: nibabel/gzip errors for NIfTI; malformed DICOM
# headers surface inside MONAI's PydicomReader as Key/Attribute/Index/TypeError (plus
# pydicom's InvalidDicomError, added in `_load_errors`). Other exceptions propagate.
_LOAD_ERRORS: tuple[type[Exception], ...] = (
    OSError, EOFError, ValueError, RuntimeError, ImageFileError, zlib.error,
    KeyError, IndexError, TypeError, AttributeError, NotImplementedError,
)
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
BODY_HU = -500.0  # voxels above this are patient/table, below are air or lung outside
MIN_AXIS = 8


class CTVolumeError(ValueError):
    """The volume cannot be used (missing, unreadable, not a CT, wrong shape): a per-item error."""


def check_ct_volume(volume_hu: np.ndarray, min_axis: int = MIN_AXIS) -> None:
    """Raise CTVolumeError with a reason when `volume_hu` is not a usable CT volume."""
    if volume_hu.ndim != 3:
        raise CTVolumeError(f"not 3-D (shape {tuple(volume_hu.shape)})")
    if min(volume_hu.shape) < min_axis:
        raise CTVolumeError(f"too small (shape {tuple(volume_hu.shape)}, need >= {min_axis} "
                            "voxels along every axis)")
    if not np.isfinite(volume_hu).all():
        raise CTVolumeError("volume has non-finite values")
    lo, hi = float(volume_hu.min()), float(volume_hu.max())
    if lo == hi:
        raise CTVolumeError(f"constant volume (all {lo:g})")
    if hi < 0 or lo > BODY_HU:
        raise CTVolumeError(f"not a CT in Hounsfield units (min {lo:g}, max {hi:g})")


def _has_pydicom() -> bool:
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _pipeline(kind: str) -> tuple[Any, Any, Any]:
    """(LoadImage, reader, Orientation) built once per process. MONAI is imported here so
    that importing an encoder module (e.g. in a worker) stays cheap."""
    from monai.data import NibabelReader, PydicomReader
    from monai.transforms import LoadImage, Orientation

    # LoadImage also instantiates MONAI's other readers; one warns when the optional GPU
    # DICOM decoder (nvImageCodec) is absent, which is harmless here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nvImageCodec")
        reader = NibabelReader() if kind == "nifti" else PydicomReader()
        loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
    # Explicit RAS labels: both readers hand over RAS affines (MONAI's default for DICOM).
    return loader, reader, Orientation(axcodes="RAS", labels=RAS_LABELS)


def reader_kind(path: Path) -> str:
    """'nifti' or 'dicom' for an existing path; raises CTVolumeError when unsupported."""
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        return "nifti"
    if not _has_pydicom():
        what = "a DICOM series folder" if path.is_dir() else f"file '{path.name}'"
        raise CTVolumeError(f"cannot read {what}: DICOM needs pydicom, which is not installed "
                            "(NIfTI .nii/.nii.gz files need only nibabel)")
    return "dicom"


def _load_errors(kind: str) -> tuple[type[Exception], ...]:
    if kind != "dicom":
        return _LOAD_ERRORS
    from pydicom.errors import InvalidDicomError

    return (*_LOAD_ERRORS, InvalidDicomError)


def check_dicom_modality(path: Path) -> None:
    """Refuse a DICOM file or folder whose headers say it is not a CT (MR, PT, SEG, ...),
    or a folder holding more than one series (stacking them would mix volumes)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.is_file())
    series: set[str] = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality", "SeriesInstanceUID"])
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue  # not a DICOM file (e.g. a DICOMDIR index); the reader decides
        modality = str(getattr(ds, "Modality", "") or "").strip().upper()
        if modality and modality != "CT":
            raise CTVolumeError(f"not a CT: DICOM Modality is '{modality}'")
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if uid:
            series.add(uid)
    if len(series) > 1:
        raise CTVolumeError(f"the folder holds {len(series)} DICOM series; expected one series per folder")


def _single_dicom_file(path: Path) -> Path | None:
    """The file when `path` is one DICOM file or a folder holding exactly one file: a
    single slice or an Enhanced multi-frame object, which `ct_dicom` reads."""
    if path.is_file():
        return path
    files = [f for f in path.iterdir() if f.is_file()]
    return files[0] if len(files) == 1 else None


def load_ct_image(path: str | Path) -> Any:
    """A RAS-oriented, channel-first MONAI MetaTensor (1, x, y, z) in HU, affine attached.
    Series folders go through MONAI's PydicomReader; single DICOM files through `ct_dicom`."""
    from models.encoders.ct_dicom import read_dicom_file

    # Reasons name no path: they land in quarantine tables and logs, and paths often carry
    # patient or study identifiers (the quarantine row already names the study).
    p = Path(path).expanduser()
    if not p.exists():
        raise CTVolumeError("image not found")
    if p.is_dir() and not any(f.is_file() for f in p.iterdir()):
        raise CTVolumeError("DICOM series folder is empty")
    kind = reader_kind(p)
    if kind == "dicom":
        check_dicom_modality(p)
    loader, reader, orient = _pipeline(kind)
    single = _single_dicom_file(p) if kind == "dicom" else None
    try:
        img = read_dicom_file(single) if single is not None else loader(str(p), reader=reader)
    except _load_errors(kind) as e:
        first = (str(e).strip().splitlines() or [""])[0].replace(str(p), "<image>").replace(p.name, "<image>")[:200]
        raise CTVolumeError(f"unreadable image ({type(e).__name__}: {first})") from e
    if img.ndim != 4 or img.shape[0] != 1:  # channel-first: (1, x, y, z) for a 3-D CT
        raise CTVolumeError(f"not 3-D (shape {tuple(img.shape[1:])} with {img.shape[0]} channel(s))")
    return orient(img)
