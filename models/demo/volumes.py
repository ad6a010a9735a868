"""CT volumes of the synthetic demo cohort: a body outline, organs and the planted findings
painted on a normalized grid, written as gzipped NIfTI (see `models.demo.cohort`)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from models.demo.reports import StudyFacts

REF_FOV_MM = (384.0, 384.0, 320.0)  # anatomy is laid out for this field of view
Placement = tuple[float, float, float, float]  # organ x/y scale, z shift, contrast offset HU
LIVER_CENTER = (0.30, 0.02, 0.30)  # normalized RAS coordinates (-1..1 over the volume)


@dataclass(frozen=True)
class Grid:
    """Open (broadcastable) normalized coordinate axes, built once per cohort."""

    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # 1-D, per axis
    shape: tuple[int, int, int]
    dv: tuple[float, float, float]  # one voxel in normalized units

    @classmethod
    def build(cls, shape: tuple[int, int, int]) -> Grid:
        x, y, z = (((np.arange(n) - (n - 1) / 2) * 2.0 / n).astype(np.float32) for n in shape)
        return cls(axes=(x, y, z), shape=shape,
                   dv=(2.0 / shape[0], 2.0 / shape[1], 2.0 / shape[2]))

    def ellipsoid(self, center: tuple, semi: tuple, pad: float = 1.0) -> tuple[tuple, np.ndarray]:
        """(bounding-box slices, squared normalized distance inside the box): painting only
        the box keeps a volume at a few milliseconds."""
        semi = tuple(max(s, 0.9 * d) for s, d in zip(semi, self.dv, strict=True))
        sl = []
        for c, s, n in zip(center, semi, self.shape, strict=True):
            lo = int(np.floor((c - s * pad + 1.0) * n / 2.0 - 0.5))
            hi = int(np.ceil((c + s * pad + 1.0) * n / 2.0 - 0.5)) + 1
            sl.append(slice(min(max(lo, 0), n), min(max(hi, 0), n)))
        d = [((g[s] - c) / r) ** 2 for g, s, c, r in zip(self.axes, sl, center, semi, strict=True)]
        return tuple(sl), d[0][:, None, None] + d[1][None, :, None] + d[2][None, None, :]


def _blob(vol: np.ndarray, g: Grid, center: tuple, semi: tuple, hu: float) -> None:
    sl, d = g.ellipsoid(center, semi)
    vol[sl][d <= 1.0] = hu


def _on_shell(rng: np.random.Generator, center: tuple, semi: tuple, r: float, zlim: tuple) -> tuple:
    """A random point at fraction r of an ellipsoid's radius (cyst / spot placement)."""
    v = rng.normal(size=3)
    v[2] = np.clip(v[2], *zlim)
    v /= np.linalg.norm(v) + 1e-9
    return tuple(c + r * s * x for c, s, x in zip(center, semi, v, strict=True))


def _paint_body(vol: np.ndarray, g: Grid, a: np.random.Generator, s: np.random.Generator,
                f: StudyFacts) -> tuple[np.ndarray, float, float]:
    """Air, subcutaneous fat, muscle wall, bowel-textured cavity, gas pockets, ascites."""
    sx, sy = a.uniform(0.85, 1.1, 2)
    x, y = g.axes[0][:, None], g.axes[1][None, :]
    for k, hu in ((1.0, a.normal(-100, 10)), (0.9, 50.0), (0.8, a.uniform(-45, -15))):
        vol[((x / (0.8 * sx * k)) ** 2 + (y / (0.6 * sy * k)) ** 2) <= 1.0] = hu
    body = ((x / (0.8 * sx)) ** 2 + (y / (0.6 * sy)) ** 2) <= 1.0
    cavity = ((x / (0.64 * sx)) ** 2 + (y / (0.48 * sy)) ** 2) <= 1.0
    tex = _blocky(s, g.shape) * np.float32(30.0)  # bowel loops and mesenteric fat
    tex *= cavity[:, :, None]
    vol += tex
    for _ in range(int(s.integers(3, 9))):
        c = (s.uniform(-0.4, 0.4), s.uniform(-0.05, 0.3), s.uniform(-0.85, 0.1))
        _blob(vol, g, c, (s.uniform(0.03, 0.08),) * 3, -900.0)
    if f.ascites:
        sl, d = g.ellipsoid(LIVER_CENTER, (0.34, 0.40, 0.40), pad=1.3)
        vol[sl][(d > 0.8) & (d <= 1.6) & cavity[sl[0], sl[1], None]] = 8.0
    return body, (sx + 1.0) / 2.0, (sy + 1.0) / 2.0


def _blocky(rng: np.random.Generator, shape: tuple[int, ...], block: int = 2) -> np.ndarray:
    """Low-frequency noise (coarse grid, repeated): organ texture and nodular contours."""
    (a, b, c) = (-(-n // block) for n in shape)
    coarse = rng.standard_normal((a, 1, b, 1, c, 1), dtype=np.float32)
    full = np.broadcast_to(coarse, (a, block, b, block, c, block)).reshape(a * block, b * block, -1)
    return full[: shape[0], : shape[1], : shape[2]]


def _paint_liver(vol: np.ndarray, g: Grid, a: np.random.Generator, s: np.random.Generator,
                 f: StudyFacts, k: Placement) -> None:
    """Liver (cirrhosis: shrunken, dense -20 HU, nodular, heterogeneous), gallbladder and
    stones, hepatic cyst."""
    cirr = "cirrhosis" in f.findings
    size = a.uniform(0.72, 0.85) if cirr else a.uniform(0.92, 1.08)
    c = (LIVER_CENTER[0] * k[0] + a.normal(0, 0.02), LIVER_CENTER[1] * k[1], LIVER_CENTER[2] + k[2])
    semi = (0.34 * size, 0.40 * size, 0.40 * size)
    hu = (a.normal(40, 4) if cirr else a.normal(60, 4)) + k[3]
    sl, d = g.ellipsoid(c, semi, pad=1.4)
    if cirr:
        bumps = _blocky(a, d.shape)
        vol[sl][d <= 1.0 + 0.3 * bumps] = (hu + 14.0 * _blocky(s, d.shape))[d <= 1.0 + 0.3 * bumps]
    else:
        vol[sl][d <= 1.0] = hu
    gb = (0.16 * k[0], 0.14 * k[1], 0.02 + k[2])
    _blob(vol, g, gb, (0.07, 0.09, 0.12), a.normal(10, 4))
    if "gallstones" in f.findings:
        for _ in range(int(a.integers(1, 4))):
            _blob(vol, g, _on_shell(a, gb, (0.07, 0.09, 0.12), 0.4, (-1, 1)), (0.0,) * 3,
                  a.uniform(250, 500))
    if "hepatic_cyst" in f.findings:
        r = f.hepatic_cyst_cm * 10.0 / REF_FOV_MM[0]  # radius of a sphere `cm` across
        _blob(vol, g, _on_shell(a, c, semi, 0.55, (-0.8, 0.8)), (r, r, r), a.normal(5, 3))


def _paint_organs(vol: np.ndarray, g: Grid, a: np.random.Generator, f: StudyFacts,
                  k: Placement) -> None:
    """Spleen (enlarged in cirrhosis), kidneys (+ cyst), aorta, IVC, bladder."""
    sp = f.spleen_cm / 11.0
    _blob(vol, g, (-0.45 * k[0], -0.18 * k[1], 0.35 + k[2]),
          (0.11 * sp, 0.17 * sp, 0.20 * sp), a.normal(50, 4) + k[3])
    for side, x, z in (("right", 0.30, -0.16), ("left", -0.30, -0.06)):
        c = (x * k[0] + a.normal(0, 0.02), -0.26 * k[1], z + k[2] + a.normal(0, 0.03))
        _blob(vol, g, c, (0.10, 0.12, 0.24), a.normal(30, 4) + 1.5 * k[3])
        if "renal_cyst" in f.findings and f.renal_cyst_side == side:
            r = f.renal_cyst_cm * 10.0 / REF_FOV_MM[0]
            _blob(vol, g, _on_shell(a, c, (0.10, 0.12, 0.24), 0.5, (-1, 1)), (r, r, r),
                  a.normal(5, 3))
    for x, y, r, hu in ((-0.07, -0.14, 0.065, 40 + 1.5 * k[3]), (0.10, -0.12, 0.06, 35 + k[3])):
        _blob(vol, g, (x * k[0], y * k[1], 0.0), (r, r, 2.0), hu)
    _blob(vol, g, (0.0, 0.22 * k[1], -0.85 + k[2]), (0.16, 0.13, 0.15), a.normal(8, 3))


def _paint_spine(vol: np.ndarray, g: Grid, a: np.random.Generator, f: StudyFacts,
                 k: Placement) -> None:
    """Vertebral bodies (cortex ~700, trabecular ~250), discs, canal, posterior
    elements; spondylosis adds osteophyte spurs at the endplate margins."""
    cy, rx, ry = -0.30 * (2.0 * k[1] - 1.0), 0.13, 0.11  # follows the back of the body
    x, y = g.axes[0][:, None], g.axes[1][None, :] - cy
    d2 = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    zmm = g.axes[2] * REF_FOV_MM[2] / 2.0
    phase = (zmm / 38.0 + a.uniform(0, 1)) % 1.0
    disc = phase < 0.22
    vol[d2 <= 1.0] = 700.0
    vol[d2 <= 0.75] = a.normal(250, 25)
    vol[(d2 <= 1.0)[:, :, None] & disc[None, None, :]] = 80.0
    _blob(vol, g, (0.0, cy - 0.12, 0.0), (0.045, 0.03, 2.0), 10.0)
    _blob(vol, g, (0.0, cy - 0.175, 0.0), (0.07, 0.035, 2.0), 450.0)
    if "spondylosis" in f.findings:
        theta = np.arctan2(y, x)
        spur = np.cos(3 * theta + a.uniform(0, 6.3)) > 0.1  # a few spurs, not a full ring
        ring = (d2 > 1.0) & (d2 <= 1.5) & spur & (y > -0.05)
        levels = ((phase < 0.4) | (phase > 0.85)) & (a.random(len(phase)) < 0.8)
        vol[ring[:, :, None] & levels[None, None, :]] = a.uniform(550, 800)


def _paint_chest(vol: np.ndarray, g: Grid, a: np.random.Generator, f: StudyFacts,
                 k: Placement) -> None:
    """Lung bases (+ effusion), heart (+ coronary calcifications), hiatal hernia."""
    for side, x in (("right", 0.36), ("left", -0.36)):
        c, semi = (x * k[0], -0.08 * k[1], 1.05 + k[2]), (0.30, 0.42, 0.55)
        sl, d = g.ellipsoid(c, semi)
        vol[sl][d <= 1.0] = a.normal(-850, 20)
        if "pleural_effusion" in f.findings and f.effusion_side in (side, "bilateral"):
            post = (g.axes[1][sl[1]] - c[1]) / semi[1] < -0.3
            vol[sl][(d <= 1.0) & post[None, :, None]] = 15.0
    hc, hs = (-0.10 * k[0], 0.22 * k[1], 0.98 + k[2]), (0.34, 0.28, 0.36)
    _blob(vol, g, hc, hs, a.normal(40, 4) + k[3])
    if "coronary_calcification" in f.findings:
        zlim = (-0.95, -0.25)
        for _ in range(int(a.integers(3, 7))):
            p = _on_shell(a, hc, hs, 0.85, zlim)
            p = (p[0], abs(p[1] - hc[1]) + hc[1], min(p[2], 0.85))
            _blob(vol, g, p, tuple(a.uniform(1.0, 1.5) * d for d in g.dv), a.uniform(500, 900))
    if "hiatal_hernia" in f.findings:
        _blob(vol, g, (0.0, -0.05 * k[1], 0.62 + k[2]), (0.09, 0.08, 0.12), 30.0)
        _blob(vol, g, (0.0, -0.05 * k[1], 0.68 + k[2]), (0.05, 0.05, 0.05), -700.0)


def paint_volume(g: Grid, seed: int, pid: int, visit: int, f: StudyFacts,
            noise: tuple[float, float]) -> np.ndarray:
    """One int16 HU volume. Anatomy draws from the patient's stream (identical across
    visits); contrast, position, gas and noise draw from the study's stream."""
    a = np.random.default_rng([seed, 5, pid])
    s = np.random.default_rng([seed, 6, pid, visit])
    vol = np.full(g.shape, -1000.0, dtype=np.float32)
    body, kx, ky = _paint_body(vol, g, a, s, f)
    k = (kx, ky, float(s.normal(0, 0.04)), float(s.normal(0, 6) - (0 if f.contrast else 10)))
    _paint_liver(vol, g, a, s, f, k)
    _paint_organs(vol, g, a, f, k)
    _paint_spine(vol, g, a, f, k)
    _paint_chest(vol, g, a, f, k)
    grain = s.standard_normal((int(body.sum()), g.shape[2]), dtype=np.float32)
    grain *= np.float32(s.uniform(*noise))
    vol[body] += grain  # scanner noise inside the body only: air compresses to nothing
    np.rint(vol, out=vol)
    return np.clip(vol, -1024, 3071, out=vol).astype(np.int16)


def nifti_header(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> bytes:
    """The NIfTI-1 prefix (header + empty extension flag) shared by every volume of a
    cohort: built once by nibabel (int16, RAS affine = diag(spacing), qform = sform)."""
    affine = np.diag([*spacing, 1.0])
    img = nib.Nifti1Image(np.zeros(shape, np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    data = img.to_bytes()
    return data[: len(data) - int(np.prod(shape)) * 2]


def write_gz(path: Path, header: bytes, vol: np.ndarray) -> None:
    """gzip with mtime=0 and no file name stored, so the bytes depend only on the data;
    zlib releases the GIL, so this runs in a worker thread beside the painting."""
    path.write_bytes(gzip.compress(header + vol.tobytes(order="F"), compresslevel=1, mtime=0))
