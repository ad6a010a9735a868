"""Merlin's CT preprocessing on real CT files shipped by pip packages, and on NIfTI files
checked against a plain numpy computation."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.encoders.ct_io import CTVolumeError, load_ct_image
from models.encoders.ct_preprocess import ROI, merlin_preprocess, preprocess_path

CT_SMALL = get_testdata_file("CT_small.dcm")


def _pydicom_data_ct() -> Path:
    """The 512x512 Enhanced CT object in the `pydicom-data` package (import name data_store)."""
    data_store = pytest.importorskip("data_store")
    return Path(data_store.__file__).parent / "data" / "eCT_Supplemental.dcm"


def _series(tmp_path: Path, n: int) -> Path:
    """A classic n-slice series folder built from pydicom's CT slice (5 mm apart)."""
    ref = pydicom.dcmread(CT_SMALL)
    d = tmp_path / "series"
    d.mkdir()
    for i in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        x, y, z = (float(v) for v in ref.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * i]
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(d / f"slice{i:03d}.dcm")
    return d


def _check_output(arr: np.ndarray) -> None:
    assert arr.shape == (1, *ROI) and arr.dtype == np.float32
    assert arr.min() == 0.0 and 0.0 < arr.max() <= 1.0


def test_pydicom_ct_slice(tmp_path: Path) -> None:
    arr, err = preprocess_path(CT_SMALL)
    assert err is None and arr is not None
    _check_output(arr)
    # The slice holds bone (> 1000 HU): clipped to exactly 1.
    assert pydicom.dcmread(CT_SMALL).pixel_array.max() - 1024 > 1000 and arr.max() == 1.0


def test_series_folder_matches_single_slice_geometry(tmp_path: Path) -> None:
    one = load_ct_image(CT_SMALL)
    series = load_ct_image(_series(tmp_path, 6))
    assert tuple(series.shape) == (1, 128, 128, 6)
    np.testing.assert_allclose(np.asarray(one.affine), np.asarray(series.affine), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(one[0, :, :, 0]), np.asarray(series[0, :, :, 0]))
    arr = merlin_preprocess(series)
    _check_output(arr)


def test_pydicom_data_512_ct() -> None:
    path = _pydicom_data_ct()
    img = load_ct_image(path)
    assert tuple(img.shape) == (1, 512, 512, 2)
    assert float(img.min()) == -1024.0  # rescale intercept from the functional groups
    arr, err = preprocess_path(str(path))
    assert err is None and arr is not None
    _check_output(arr)


def test_nifti_at_target_spacing_is_window_pad_crop(tmp_path: Path) -> None:
    """At 1.5x1.5x3 mm in RAS, Spacing is the identity; the rest is numpy arithmetic."""
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1500, 1500, size=(250, 200, 40)).astype(np.float32)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([1.5, 1.5, 3.0, 1.0])), path)
    arr, err = preprocess_path(str(path))
    assert err is None and arr is not None
    scaled = np.clip((hu + 1000.0) / 2000.0, 0.0, 1.0)
    want = np.zeros(ROI, np.float32)
    x0 = (250 - 224) // 2  # centre crop along x; centre pad along y and z
    y0, z0 = (224 - 200) // 2, (160 - 40) // 2
    want[:, y0 : y0 + 200, z0 : z0 + 40] = scaled[x0 : x0 + 224]
    np.testing.assert_allclose(arr[0], want, atol=1e-5)


def test_lps_nifti_is_reoriented(tmp_path: Path) -> None:
    hu = np.full((20, 20, 10), -1000.0, np.float32)
    hu[:5] = 500.0  # low x index = patient's right in an LPS (x flipped) affine
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([-1.5, 1.5, 3.0, 1.0])), path)
    img = load_ct_image(path)
    assert float(img[0, -1, 10, 5]) == 500.0 and float(img[0, 0, 10, 5]) == -1000.0


def test_bad_inputs_become_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti")
    mr = tmp_path / "mr"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "a.dcm")
    vec = tmp_path / "vec.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), vec)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 30.0, np.float32), np.eye(4)), flat)
    cases = {str(tmp_path / "empty"): "empty", str(tmp_path / "junk.nii.gz"): "unreadable",
             str(mr): "Modality is 'MR'", str(vec): "channel", str(flat): "constant", "": "no image"}
    for item, reason in cases.items():
        arr, err = preprocess_path(item)
        assert arr is None and err is not None and reason in err, (item, err)


def test_load_raises_volume_error_for_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CTVolumeError, match="not found"):
        load_ct_image(tmp_path / "missing.nii.gz")
