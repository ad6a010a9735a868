"""Offline CT encoder: regional Hounsfield-unit composition and texture, no weights.

The demo (and any run without Merlin weights) still needs image vectors that carry real
anatomy, so a planted finding (a low-density liver lesion, calcified plaque) shows up in
specific dimensions that a sparse autoencoder can pick up. The encoder is:

1. load with MONAI (NIfTI via nibabel, DICOM series folders via pydicom), orient to RAS;
2. `ct_features`, a pure numpy function: crop to the body (largest connected component of
   voxels > -500 HU) so table position and field of view do not matter, split the crop into
   a `cfg.grid` = (x, y, z) grid of boxes in RAS order (index 0 is the patient's left,
   posterior, inferior end; x grows to the right, y to anterior, z to superior), and
   describe every box and the whole body with the same 14 statistics (`STAT_NAMES`).

HU-valued statistics are reported in kHU (HU / 1000) and the gradient in kHU/mm so that
all dimensions are O(0.01..1) like the bin fractions; downstream code should still
standardise dimensions before an SAE, since their spreads differ by an order of magnitude.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from data_contracts.config import CTRadiomicsConfig
from models.encoders.base import EncodeResult, Modality, ProgressFn, is_missing
from models.encoders.ct_io import BODY_HU, CTVolumeError, check_ct_volume, load_ct_image
from models.encoders.parallel import map_items

__all__ = ["CTRadiomicsEncoder", "CTVolumeError", "check_ct_volume", "ct_features", "feature_dim", "feature_names",
           "load_ct"]

FEATURE_VERSION = "ct_radiomics/1"
MAX_AXIS = 256  # larger volumes are strided down to <= this many voxels per axis

# Contiguous HU bins (lower edges after the first); fractions per region sum to 1.
BIN_NAMES = ("air", "lung", "transition", "fat", "fluid", "soft_tissue", "enhancing", "bone",
             "calcium")
BIN_EDGES = np.array([-900.0, -500.0, -200.0, -30.0, 20.0, 80.0, 200.0, 400.0], dtype=np.float32)
SOFT_RANGE = (-30.0, 150.0)  # "soft tissue" for the mean/std statistics (fluid..enhancing)
STAT_NAMES = (
    *(f"frac_{b}" for b in BIN_NAMES),
    "soft_mean_khu", "soft_std_khu", "p95_khu", "p99_khu", "grad_mean_khu_per_mm",
)
N_STATS = len(STAT_NAMES)
_ItemResult = tuple[np.ndarray | None, str | None]  # (vector, None) or (None, reason)


# ---------------------------------------------------------------- pure features
def feature_dim(cfg: CTRadiomicsConfig) -> int:
    """One block of `N_STATS` per grid cell, plus one for the whole body."""
    return (math.prod(cfg.grid) + 1) * N_STATS


def feature_names(cfg: CTRadiomicsConfig) -> list[str]:
    """Names in output order, e.g. 'x0_y2_z1/frac_calcium', 'body/p99_khu'."""
    gx, gy, gz = cfg.grid
    cells = [f"x{i}_y{j}_z{k}" for i in range(gx) for j in range(gy) for k in range(gz)]
    return [f"{c}/{s}" for c in [*cells, "body"] for s in STAT_NAMES]


def body_bbox(volume_hu: np.ndarray) -> tuple[slice, slice, slice]:
    """Bounding box of the largest connected component above BODY_HU: the patient.
    Ignoring smaller components keeps speckle noise and a detached table out of the box."""
    mask = volume_hu > BODY_HU
    labels, n = ndimage.label(mask)
    if n == 0:
        raise CTVolumeError(f"no body voxels above {BODY_HU:g} HU")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    box = ndimage.find_objects(labels)[int(sizes.argmax()) - 1]
    return box[0], box[1], box[2]


def _edges(shape: tuple[int, ...], grid: tuple[int, int, int]) -> list[list[int]]:
    """Per axis, the g + 1 boundaries of a near-equal split into g runs."""
    return [np.linspace(0, n, g + 1).round().astype(int).tolist()
            for n, g in zip(shape, grid, strict=True)]


def _cell_ids(shape: tuple[int, ...], grid: tuple[int, int, int]) -> np.ndarray:
    """Cell id per voxel, x-major like `feature_names`."""
    ix, iy, iz = (np.searchsorted(e[1:-1], np.arange(n), side="right")
                  for e, n in zip(_edges(shape, grid), shape, strict=True))
    gy, gz = grid[1], grid[2]
    return (ix[:, None, None] * gy + iy[None, :, None]) * gz + iz[None, None, :]


def _cell_boxes(shape: tuple[int, ...], grid: tuple[int, int, int]) -> list[tuple[slice, ...]]:
    """The same cells as `_cell_ids`, as boxes in the same order."""
    ex, ey, ez = _edges(shape, grid)
    return [(slice(ex[i], ex[i + 1]), slice(ey[j], ey[j + 1]), slice(ez[k], ez[k + 1]))
            for i in range(grid[0]) for j in range(grid[1]) for k in range(grid[2])]


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """np.percentile's linear interpolation via one np.partition with scalar bookkeeping:
    several times less overhead on the small per-cell arrays, which dominate the time."""
    n = values.size
    pos = [q / 100.0 * (n - 1) for q in qs]
    lo = [int(p) for p in pos]
    hi = [min(i + 1, n - 1) for i in lo]
    part = np.partition(values, sorted(set(lo + hi)))
    return [float(part[a] + (p - a) * (part[b] - part[a]))
            for p, a, b in zip(pos, lo, hi, strict=True)]


def _sums(cid: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-cell sums (counts when weights is None), with the whole body appended last."""
    s = np.bincount(cid, weights=weights, minlength=n).astype(np.float64)
    return np.append(s, s.sum())


def _grid_stats(v: np.ndarray, grad: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(n_cells + 1, N_STATS): `STAT_NAMES` per cell, then for the whole crop. Cells left
    empty (crop thinner than the grid) and cells without soft tissue read 0."""
    n_cells, nb = math.prod(grid), len(BIN_NAMES)
    cid = _cell_ids(v.shape, grid).ravel()
    flat = v.ravel()
    bins = np.searchsorted(BIN_EDGES, flat, side="right")
    counts = np.bincount(cid * nb + bins, minlength=n_cells * nb).reshape(n_cells, nb)
    counts = np.vstack([counts, counts.sum(0)]).astype(np.float64)
    n = np.maximum(counts.sum(1), 1.0)
    soft = (flat >= SOFT_RANGE[0]) & (flat <= SOFT_RANGE[1])
    ns = _sums(cid[soft], n_cells)
    s1, s2 = (_sums(cid[soft], n_cells, flat[soft].astype(np.float64) ** p) for p in (1, 2))
    mean = np.divide(s1, ns, out=np.zeros_like(s1), where=ns > 0)
    var = np.divide(s2, ns, out=np.zeros_like(s2), where=ns > 0) - mean**2
    out = np.zeros((n_cells + 1, N_STATS))
    out[:, :nb] = counts / n[:, None]
    out[:, nb] = mean
    out[:, nb + 1] = np.sqrt(np.maximum(var, 0.0))
    out[:, nb + 4] = _sums(cid, n_cells, grad.ravel()) / n
    for c, box in enumerate(_cell_boxes(v.shape, grid)):
        block = v[box].ravel()
        if block.size:
            out[c, nb + 2 : nb + 4] = _percentiles(block, (95.0, 99.0))
    out[-1, nb + 2 : nb + 4] = _percentiles(flat, (95.0, 99.0))
    out[:, nb:] /= 1000.0  # HU -> kHU (fractions stay as they are)
    return out


def ct_features(
    volume_hu: np.ndarray,
    cfg: CTRadiomicsConfig,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Fixed-length float32 description of a RAS-oriented CT volume in HU.

    `spacing` (mm per voxel along x, y, z; default 1 mm) only scales the gradient. Values
    are clipped to [cfg.hu_min, cfg.hu_max] first, so metal and beam-hardening extremes
    do not dominate percentiles and texture. Raises CTVolumeError for unusable volumes.
    """
    vol = np.asarray(volume_hu)
    check_ct_volume(vol)
    sp = np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64).copy()
    strides = [max(1, math.ceil(n / MAX_AXIS)) for n in vol.shape]
    if any(s > 1 for s in strides):  # bound time and memory on 512x512xN scans
        vol = vol[:: strides[0], :: strides[1], :: strides[2]]
        sp = sp * np.asarray(strides)
    v = np.clip(vol.astype(np.float32, copy=False), cfg.hu_min, cfg.hu_max)
    v = v[body_bbox(v)]
    return _grid_stats(v, _gradient_magnitude(v, sp), cfg.grid).ravel().astype(np.float32)


def _gradient_magnitude(v: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """|grad HU| in HU/mm; axes of length 1 contribute nothing (np.gradient needs >= 2)."""
    sq = np.zeros(v.shape, dtype=np.float32)
    for axis in range(3):
        if v.shape[axis] >= 2:
            g = np.gradient(v, float(spacing[axis]), axis=axis)
            sq += g * g
    return np.sqrt(sq)


# ---------------------------------------------------------------- loading
def load_ct(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file or DICOM series folder, oriented to RAS: (volume in HU, spacing mm).
    Raises CTVolumeError with a short reason for missing, unreadable or non-CT images."""
    img = load_ct_image(path)
    sx, sy, sz = (*(float(s) for s in img.pixdim), 1.0, 1.0, 1.0)[:3]
    return img.numpy()[0], (sx, sy, sz)


def encode_path(item: str | None, cfg: CTRadiomicsConfig) -> _ItemResult:
    """(vector, None) or (None, reason) for one study's image; never raises for bad data."""
    if is_missing(item):
        return None, "no image"
    try:
        vol, spacing = load_ct(str(item))
        return ct_features(vol, cfg, spacing), None
    except CTVolumeError as e:
        return None, str(e)


# ---------------------------------------------------------------- encoder
class CTRadiomicsEncoder:
    """Image encoder over NIfTI files / DICOM series folders; see the module docstring."""

    modality: Modality = "image"

    def __init__(self, cfg: CTRadiomicsConfig) -> None:
        if cfg.hu_min >= cfg.hu_max:
            raise ValueError(f"hu_min ({cfg.hu_min}) must be below hu_max ({cfg.hu_max})")
        self.cfg = cfg
        self.name: str = cfg.name
        self.dim = feature_dim(cfg)

    def identity(self) -> dict[str, object]:
        return {
            "name": self.name,
            "feature_version": FEATURE_VERSION,
            "grid": list(self.cfg.grid),
            "hu_window": [self.cfg.hu_min, self.cfg.hu_max],
            "orientation": "RAS",
            "max_axis": MAX_AXIS,
            "dim": self.dim,
        }

    def _results(self, items: Sequence[str | None]) -> Iterator[_ItemResult]:
        return map_items(functools.partial(encode_path, cfg=self.cfg), items, self.cfg.n_workers)

    def encode(
        self, items: Sequence[str | None], progress: ProgressFn | None = None
    ) -> EncodeResult:
        vectors: list[np.ndarray] = []
        ok: list[int] = []
        errors: dict[int, str] = {}
        for i, (vec, err) in enumerate(self._results(items)):
            if vec is None:
                errors[i] = err or "unknown error"
            else:
                vectors.append(vec)
                ok.append(i)
            if progress is not None:
                progress(1)
        arr = np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)
        return EncodeResult(vectors=arr, ok=np.asarray(ok, dtype=np.int64), errors=errors)
