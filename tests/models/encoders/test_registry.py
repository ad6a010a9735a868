"""Offline encoders: registry, MiniLM report encoder, CT radiomics image encoder."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from data_contracts.config import CTRadiomicsConfig, MiniLMConfig
from models.devices import cpu_has_native_bf16, resolve_device, resolve_dtype
from models.encoders import ENCODERS, build_encoder
from models.encoders.ct_radiomics import (
    BIN_NAMES,
    CTRadiomicsEncoder,
    CTVolumeError,
    ct_features,
    feature_dim,
    feature_names,
)
from models.encoders.text_minilm import MiniLMEncoder

SHAPE = (48, 48, 32)
REPORTS = [
    "Cirrhotic liver morphology with nodular contour, splenomegaly and esophageal varices.",
    "No acute intrathoracic abnormality.",
    "Moderate coronary artery calcification. " * 12,
    "Hypodense lesion in segment VII of the liver measuring 2.3 cm, likely a cyst.",
    "Lungs are clear. Heart size normal.",
]


# ---------------------------------------------------------------- helpers
def phantom(shift: tuple[int, int, int] = (0, 0, 0), seed: int = 0, lesion: bool = False,
            spots: bool = False) -> np.ndarray:
    """48x48x32 int16 'torso' in HU: fat rim, soft tissue, two lungs (upper half), a spine,
    optional low-density lesion (left-anterior-inferior) and calcified spots."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    cx, cy, z0, z1 = 24 + shift[0], 24 + shift[1], 2 + shift[2], 28 + shift[2]
    inz = (z >= z0) & (z <= z1)
    r = ((x - cx) / 18) ** 2 + ((y - cy) / 14) ** 2
    v = np.full(SHAPE, -1000.0, dtype=np.float32)
    v[(r <= 1) & inz] = -100
    v[(r <= 0.75) & inz] = 45
    lungs = (((np.abs(x - cx) - 8) / 6) ** 2 + ((y - cy) / 7) ** 2 <= 1) & (z > 15 + shift[2])
    v[lungs & inz] = -850
    v[(((x - cx) / 3) ** 2 + ((y - cy + 9) / 3) ** 2 <= 1) & inz] = 300  # cancellous spine
    if lesion:
        v[(x - cx + 9) ** 2 + (y - cy - 5) ** 2 + (z - z0 - 6) ** 2 <= 16] = 5
    if spots:
        for dx, dz in ((6, 4), (8, 8), (7, 12)):
            v[int(cx + dx), int(cy + 4), int(z0 + dz)] = 900
    v += rng.normal(0.0, 8.0, SHAPE).astype(np.float32)
    return np.round(v).astype(np.int16)


def write_nifti(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(arr, np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine),
             str(path))
    return str(path)


def cell_stat(vec: np.ndarray, cfg: CTRadiomicsConfig, cell: str, stat: str) -> float:
    return float(vec[feature_names(cfg).index(f"{cell}/{stat}")])


# ---------------------------------------------------------------- registry / devices
def test_registry_round_trip() -> None:
    from data_contracts.config import _ENCODER_MODALITY

    assert set(ENCODERS) == {"minilm", "ct_radiomics", "merlin", "qwen3_embedding"} == set(_ENCODER_MODALITY)
    for cfg in (MiniLMConfig(device="cpu"), CTRadiomicsConfig()):
        enc = build_encoder(cfg)
        assert enc.name == cfg.name
        assert enc.modality == {"minilm": "report", "ct_radiomics": "image"}[cfg.name]
    assert build_encoder(MiniLMConfig(device="cpu")).dim == 384
    assert build_encoder(CTRadiomicsConfig()).dim == feature_dim(CTRadiomicsConfig())


def test_registry_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown encoder 'biomedclip'.*ct_radiomics, merlin, minilm"):
        build_encoder(SimpleNamespace(name="biomedclip"))


def test_config_names_the_encoder_per_modality() -> None:
    from pydantic import ValidationError

    from data_contracts.config import ModalityConfig

    m = ModalityConfig.model_validate({"modality": "report", "encoder": {"name": "qwen3_embedding", "dim": 256}})
    assert m.encoder.name == "qwen3_embedding" and m.encoder.dim == 256  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="embeds images, not reports"):
        ModalityConfig.model_validate({"modality": "report",
                                       "encoder": {"name": "merlin", "checkpoint_path": "/m.pt"}})


def test_dtype_rules() -> None:
    cpu = torch.device("cpu")
    auto = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", cpu) == auto
    assert resolve_dtype("float32", cpu) == torch.float32
    assert resolve_device("cpu") == cpu
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", cpu)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


# ---------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder(MiniLMConfig(device="cpu", dtype="float32", batch_size=2))


# SentenceTransformer(path).encode(REPORTS[:2], normalize_embeddings=True) @ R, with
# R = default_rng(0).standard_normal((384, 12)): a fingerprint of the whole reference vector
# that checks against sentence-transformers without its ~10 s import (the full check is slow).
ST_PROJECTION = [
    [-0.7759, -0.5559, 1.3537, 0.4604, -0.2846, -0.4122, -0.2159, 2.0041, -0.5743, 1.0621,
     -0.5691, 0.0117],
    [-2.4124, 0.5719, -2.2626, 2.537, -0.3704, 0.1353, -1.0303, -0.4976, 0.4114, 0.1244,
     -1.6215, 1.2649],
]


def test_minilm_matches_pinned_reference(minilm: MiniLMEncoder) -> None:
    got = minilm.encode(REPORTS[:2]).vectors
    proj = got @ np.random.default_rng(0).standard_normal((384, 12))
    np.testing.assert_allclose(proj, np.asarray(ST_PROJECTION), atol=0.02)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm: MiniLMEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(minilm.model_dir), device="cpu")
    want = ref.encode(REPORTS, normalize_embeddings=True, convert_to_numpy=True)
    got = minilm.encode(REPORTS)
    assert got.vectors.shape == (len(REPORTS), 384) and got.vectors.dtype == np.float32
    cos = (want * got.vectors).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.999


def test_minilm_empty_reports_are_errors(minilm: MiniLMEncoder) -> None:
    seen: list[int] = []
    items = ["", None, "  \n\t", REPORTS[0], math.nan, REPORTS[1]]
    res = minilm.encode(items, progress=seen.append)  # type: ignore[arg-type]
    assert res.errors == {0: "empty report", 1: "empty report", 2: "empty report",
                          4: "empty report"}
    assert res.ok.tolist() == [3, 5] and res.ok.dtype == np.int64
    assert sum(seen) == 2
    assert minilm.encode([None, " "]).vectors.shape == (0, 384)


def test_minilm_order_preserved_and_unit_norm(minilm: MiniLMEncoder) -> None:
    # batch_size=2 with very different lengths: sorting reorders, output must not.
    res = minilm.encode(REPORTS)
    assert res.ok.tolist() == list(range(len(REPORTS)))
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(REPORTS):
        alone = minilm.encode([text]).vectors[0]
        assert float(alone @ res.vectors[i]) > 0.9999


def test_minilm_identity(minilm: MiniLMEncoder) -> None:
    ident = minilm.identity()
    assert ident["name"] == "minilm" and ident["pooling"] == "mean"
    assert ident["max_length"] == 256 and ident["dtype"] == "float32"
    assert len(str(ident["weights_sha256"])) == 64


def test_minilm_bfloat16_close_to_float32(minilm: MiniLMEncoder) -> None:
    bf = MiniLMEncoder(MiniLMConfig(device="cpu", dtype="bfloat16"))
    assert bf.identity()["dtype"] == "bfloat16"
    a, b = minilm.encode(REPORTS).vectors, bf.encode(REPORTS).vectors
    assert b.dtype == np.float32 and ((a * b).sum(axis=1)).min() > 0.99


# ---------------------------------------------------------------- CT features
def test_ct_features_fixed_length_and_finite() -> None:
    cfg = CTRadiomicsConfig()
    vec = ct_features(phantom().astype(np.float32), cfg)
    assert vec.shape == (feature_dim(cfg),) == (len(feature_names(cfg)),)
    assert vec.dtype == np.float32 and np.isfinite(vec).all()
    nb = len(BIN_NAMES)  # HU-bin fractions of every region sum to 1
    blocks = vec.reshape(-1, len(vec) // (math.prod(cfg.grid) + 1))
    np.testing.assert_allclose(blocks[:, :nb].sum(axis=1), 1.0, atol=1e-5)
    other = ct_features(phantom().astype(np.float32), CTRadiomicsConfig(grid=(2, 3, 1)))
    assert other.shape == (feature_dim(CTRadiomicsConfig(grid=(2, 3, 1))),)


def test_ct_planted_lesion_changes_its_cell_only() -> None:
    cfg = CTRadiomicsConfig()
    base = ct_features(phantom().astype(np.float32), cfg)
    les = ct_features(phantom(lesion=True).astype(np.float32), cfg)
    # lesion centre (15, 29, 8) in the body crop lies in cell x1 (left), y2 (anterior), z0
    cell = "x1_y2_z0"
    gain = cell_stat(les, cfg, cell, "frac_fluid") - cell_stat(base, cfg, cell, "frac_fluid")
    assert gain > 0.05
    far = [i for i, n in enumerate(feature_names(cfg)) if n.startswith(("x3_", "x2_y0", "x0_y0"))]
    np.testing.assert_array_equal(base[far], les[far])  # same noise, far from the lesion


def test_ct_calcified_spots_show_in_their_cells() -> None:
    cfg = CTRadiomicsConfig()
    base = ct_features(phantom().astype(np.float32), cfg)
    calc = ct_features(phantom(spots=True).astype(np.float32), cfg)
    names = feature_names(cfg)
    rise = {names[i].split("/")[0] for i in np.flatnonzero(calc - base > 1e-6)
            if names[i].endswith("frac_calcium")}
    assert rise and rise <= {"x2_y2_z0", "x3_y2_z0", "x2_y2_z1", "x3_y2_z1", "body"}
    assert "body" in rise


def test_ct_translation_invariance() -> None:
    cfg = CTRadiomicsConfig()
    base = ct_features(phantom().astype(np.float32), cfg)
    moved = ct_features(phantom(shift=(4, -3, 1)).astype(np.float32), cfg)
    lesion = ct_features(phantom(lesion=True).astype(np.float32), cfg)
    shift_gap = np.abs(base - moved).max()
    assert shift_gap < 0.02
    assert shift_gap < 0.25 * np.abs(base - lesion).max()


@pytest.mark.parametrize(
    ("vol", "reason"),
    [
        (np.zeros((20, 20)), "not 3-D"),
        (np.zeros((20, 20, 4)) - 1000, "too small"),
        (np.full((20, 20, 20), 40.0), "constant volume"),
        (np.random.default_rng(0).uniform(0, 255, (20, 20, 20)), "not a CT in Hounsfield"),
        (np.where(np.eye(20)[:, :, None] > 0, np.nan, -1000.0) * np.ones(20), "non-finite"),
    ],
)
def test_ct_features_rejects_unusable_volumes(vol: np.ndarray, reason: str) -> None:
    with pytest.raises(CTVolumeError, match=reason):
        ct_features(vol, CTRadiomicsConfig())


# ---------------------------------------------------------------- CT encoder
def test_ct_encoder_errors_do_not_stop_the_run(tmp_path: Path) -> None:
    good = phantom()
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not a gzip stream" * 20)
    items = [
        write_nifti(tmp_path / "a.nii.gz", good),
        str(corrupt),
        write_nifti(tmp_path / "flat.nii.gz", good[:, :, 10]),
        write_nifti(tmp_path / "two.nii.gz", np.stack([good, good], axis=-1)),
        write_nifti(tmp_path / "mr.nii.gz", np.abs(good) // 8),
        None,
        str(tmp_path / "missing.nii.gz"),
        write_nifti(tmp_path / "b.nii", phantom(seed=3)),
    ]
    seen: list[int] = []
    res = CTRadiomicsEncoder(CTRadiomicsConfig()).encode(items, progress=seen.append)
    assert res.ok.tolist() == [0, 7] and res.vectors.shape == (2, feature_dim(CTRadiomicsConfig()))
    assert sum(seen) == len(items)
    expect = {1: "unreadable image", 2: "not 3-D", 3: "not 3-D", 4: "not a CT in Hounsfield",
              5: "no image", 6: "image not found"}
    assert set(res.errors) == set(expect)
    for i, start in expect.items():
        assert res.errors[i].startswith(start), res.errors[i]


def test_ct_encoder_matches_pure_function_and_orients_to_ras(tmp_path: Path) -> None:
    cfg = CTRadiomicsConfig()
    vol = phantom(lesion=True)
    ras = write_nifti(tmp_path / "ras.nii.gz", vol)
    # same anatomy stored left-right flipped with an LAS affine: RAS orientation undoes it
    las_affine = np.diag([-1.5, 1.5, 3.0, 1.0])
    las = write_nifti(tmp_path / "las.nii.gz", vol[::-1].copy(), las_affine)
    res = CTRadiomicsEncoder(cfg).encode([ras, las])
    want = ct_features(vol.astype(np.float32), cfg, spacing=(1.5, 1.5, 3.0))
    np.testing.assert_allclose(res.vectors[0], want, atol=1e-6)
    np.testing.assert_allclose(res.vectors[1], want, atol=1e-6)


def test_ct_encoder_identity_and_empty_input() -> None:
    enc = CTRadiomicsEncoder(CTRadiomicsConfig(grid=(2, 2, 2)))
    ident = enc.identity()
    assert ident["name"] == "ct_radiomics" and ident["grid"] == [2, 2, 2]
    assert ident["hu_window"] == [-1000.0, 1000.0] and "feature_version" in ident
    res = enc.encode([])
    assert res.vectors.shape == (0, enc.dim) and res.ok.shape == (0,) and not res.errors


@pytest.mark.slow
def test_ct_encoder_process_pool_matches_serial(tmp_path: Path) -> None:
    items: list[str | None] = [write_nifti(tmp_path / f"v{i}.nii.gz", phantom(seed=i))
                               for i in range(6)]
    items.insert(2, None)
    serial = CTRadiomicsEncoder(CTRadiomicsConfig()).encode(items)
    pooled = CTRadiomicsEncoder(CTRadiomicsConfig(n_workers=2)).encode(items)
    assert pooled.ok.tolist() == serial.ok.tolist() and pooled.errors == serial.errors
    np.testing.assert_array_equal(pooled.vectors, serial.vectors)


# ---------------------------------------------------------------- real CT (pydicom)
def test_real_ct_slice_from_pydicom(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = str(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    vec = ct_features(np.repeat(hu[:, :, None], 12, axis=2), CTRadiomicsConfig())
    assert np.isfinite(vec).all()
    # a DICOM series folder: the slice repeated at 5 mm steps; the lone file is one slice thin
    series = tmp_path / "series"
    series.mkdir()
    for k in range(10):
        sl = copy.deepcopy(ds)
        pos = [float(p) for p in ds.ImagePositionPatient]
        sl.ImagePositionPatient = [pos[0], pos[1], pos[2] + 5.0 * k]
        sl.InstanceNumber = k + 1
        sl.SOPInstanceUID = pydicom.uid.generate_uid()
        sl.save_as(series / f"im{k:02d}.dcm")
    res = CTRadiomicsEncoder(CTRadiomicsConfig()).encode([str(series), path])
    assert res.ok.tolist() == [0] and res.errors[1].startswith("too small (shape (128, 128, 1)")
    assert np.isfinite(res.vectors).all()
