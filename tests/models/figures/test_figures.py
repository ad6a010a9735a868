"""The report's figure tables, each checked against an independent computation: PNG bytes
decoded by Pillow, CT thumbnail orientation on a volume with a marker at a known place,
histogram counts, Manhattan thinning, FDR cut-offs against statsmodels' BH, forest rows and
page selection."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from statsmodels.stats.multitest import multipletests

from data_contracts.config import ThumbnailConfig
from models.encoders.ct_io import CTVolumeError
from models.encoders.ct_radiomics import load_ct
from models.figures.association_plots import bh_family, fdr_cuts, forest_rows, manhattan_points
from models.figures.histograms import activation_histograms, feature_histogram
from models.figures.pages import page_features, top_hits
from models.figures.png import png_grey
from models.figures.thumbnails import ct_thumbnails, display_image, thumbnail_table


def test_png_decodes_to_the_same_pixels_and_is_stable() -> None:
    img = np.random.default_rng(0).integers(0, 256, (13, 29), dtype=np.uint8)
    data = png_grey(img)
    assert data == png_grey(img.copy())
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, img)
    chunks, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        chunks.append(data[i + 4:i + 8])
        i += 12 + n
    assert chunks == [b"IHDR", b"IDAT", b"IEND"]  # no time or text chunks
    with pytest.raises(ValueError, match="2-D uint8"):
        png_grey(img.astype(np.float32))


def _marked_volume(path: Path) -> Path:
    """RAS volume 40 x 40 x 10 at 1 x 1 x 4 mm: soft tissue, a marker toward the patient's
    right (high x), anterior (high y), at the middle slice, and one superior (high z)."""
    vol = np.full((40, 40, 10), 40.0, np.float32)
    vol[30:36, 30:36, 5] = 1000.0  # right, anterior, mid-axial slice
    vol[30:36, 20, 8:10] = 1000.0  # right, mid-coronal slice, superior
    vol[0:2, :, :] = -1000.0
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 4.0, 1.0])), str(path))
    return path


def test_thumbnails_in_radiological_orientation(tmp_path: Path) -> None:
    cfg = ThumbnailConfig(size_px=40)
    th = ct_thumbnails(str(_marked_volume(tmp_path / "v.nii.gz")), cfg)
    ax, co = th["axial"], th["coronal"]
    assert ax.shape == (40, 40) and co.shape == (40, 40)  # 40 x 40 mm both: square pixels of 1 mm
    r, c = np.unravel_index(np.argmax(ax), ax.shape)
    assert r < 12 and c < 12  # anterior at the top, the patient's right on the viewer's left
    r, c = np.unravel_index(np.argmax(co), co.shape)
    assert r < 10 and c < 12  # superior at the top
    assert ax[:, -1].max() == 0  # the air strip at low x (patient's left) sits on the right edge, windowed to 0


def test_display_image_windows_and_keeps_aspect() -> None:
    img = np.array([[-1000.0, 40.0], [240.0, 3000.0]])
    out = display_image(np.kron(img, np.ones((10, 10))), (1.0, 2.0), 20, (-160.0, 240.0))
    assert out.shape == (10, 20)  # 20 x 40 mm shown with equal pixels
    assert out[0, 0] == 0 and out[-1, -1] == 255 and out[0, -1] == round(200 / 400 * 255)


def test_thumbnail_table_reads_each_volume_once_and_reports_errors(tmp_path: Path) -> None:
    path = str(_marked_volume(tmp_path / "v.nii.gz"))
    calls: list[str] = []

    def loader(p: str) -> tuple[np.ndarray, tuple[float, float, float]]:
        calls.append(p)
        if p.endswith("broken"):
            raise CTVolumeError("unreadable image (test)")
        return load_ct(p)

    cohorts = pd.DataFrame({
        "feature_id": [1, 1, 1, 2, 2, 2], "study_id": ["A", "B", "C", "A", "D", "B"],
        "role": ["exposed", "exposed", "control", "exposed", "exposed", "control"], "value": [3, 2, 0, 5, 1, 0],
        "rank": [1, 2, 1, 1, 9, 1]})
    paths = {"A": path, "B": str(tmp_path / "broken"), "C": None, "D": path}
    t = thumbnail_table("image", cohorts, paths, [1, 2], ThumbnailConfig(n_top=4, n_control=1), loader)
    assert sorted(calls) == sorted([path, str(tmp_path / "broken")])  # A once, B once, C has no path, D beyond n_top
    assert list(t.columns)[:7] == ["modality", "unit", "feature_id", "role", "rank", "study_id", "view"]
    assert len(t) == 2 * 5 and set(t["view"]) == {"axial", "coronal"}
    err = t.set_index(["feature_id", "study_id", "view"])["error"]
    assert err[(1, "B", "axial")] == "unreadable image (test)" and err[(1, "C", "axial")] == "no image"
    ok = t[t["error"].isna()]
    assert len(ok) == 4 and all(bytes(b).startswith(b"\x89PNG") for b in ok["png"])


def test_histogram_counts_match_numpy_and_sum_to_all_studies() -> None:
    rng = np.random.default_rng(3)
    v = rng.gamma(2.0, 1.0, 500)
    h = feature_histogram(v, 2000, 20)
    assert h["bin"].tolist() == list(range(21)) and h["n_studies"].iloc[0] == 1500
    assert h["n_studies"].sum() == 2000
    edges = np.linspace(0, v.max(), 21)
    idx = np.minimum(np.searchsorted(edges, v, side="right") - 1, 19)  # last bin closed on the right
    assert h["n_studies"].iloc[1:].tolist() == np.bincount(idx, minlength=20).tolist()
    acts = pd.DataFrame({"study_id": [f"s{i}" for i in range(500)], "feature_id": 4, "value": v})
    stats = pd.DataFrame({"feature_id": [4, 5], "n_studies": [2000, 2000]})
    out = activation_histograms("image", acts, stats, [4, 5], 20)
    assert out[out.feature_id == 5]["n_studies"].tolist() == [2000]  # never fires: only the zero bin
    assert out[out.feature_id == 4]["n_studies"].tolist() == h["n_studies"].tolist()


def _assoc(seed: int = 0, n_features: int = 50, outcomes: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for m in ("image", "report"):
        for o in outcomes:
            p = rng.uniform(size=n_features) ** 3
            for f in range(n_features):
                rows.append({"modality": m, "feature_id": f, "outcome_id": o, "split": "discovery", "score_p": p[f],
                             "adj_log_or": rng.normal(), "score_log_or": np.nan, "adj_odds_ratio": np.nan,
                             "adj_or_ci_low": np.nan, "adj_or_ci_high": np.nan})
    a = pd.DataFrame(rows)
    a["score_q"] = multipletests(a["score_p"], method="fdr_bh")[1]
    a["rank"] = np.nan
    ok = a["score_q"] < 0.05
    a.loc[ok, "rank"] = a[ok].groupby(["modality", "outcome_id"])["score_p"].rank(method="first")
    return a


def test_manhattan_keeps_ranked_points_and_summarises_the_rest() -> None:
    a = _assoc()
    pts = manhattan_points(a, max_points=100)
    p = pts[pts["kind"] == "point"]
    assert len(p) == 100 and p["rank"].notna().sum() == a["rank"].notna().sum()
    drawn = set(zip(p["modality"], p["feature_id"], p["outcome_id"], strict=True))
    rest = a[[k not in drawn for k in zip(a["modality"], a["feature_id"], a["outcome_id"], strict=True)]]
    assert rest["score_p"].min() >= a[a["rank"].isna()].nsmallest(100 - int(a["rank"].notna().sum()), "score_p")[
        "score_p"].max()
    bands = pts[pts["kind"] == "band"].set_index(["modality", "outcome_id"])
    assert bands["n_pairs"].sum() == len(rest)
    for (m, o), g in rest.groupby(["modality", "outcome_id"]):
        assert bands.loc[(m, o), "neglog10_p_max"] == pytest.approx(-np.log10(g["score_p"].min()))
    one = p.iloc[0]
    src = a[(a.modality == one.modality) & (a.feature_id == one.feature_id) & (a.outcome_id == one.outcome_id)].iloc[0]
    assert one["neglog10_p"] == pytest.approx(-np.log10(src.score_p)) and one["log_or"] == src.adj_log_or


def test_fdr_cuts_follow_the_bh_family() -> None:
    a = _assoc(1)
    cuts = fdr_cuts(a, 0.05)
    assert set(cuts["family"]) == {"all pairs"} and bh_family(a, 0.05) == ()
    expect = a.loc[a["score_q"] < 0.05, "score_p"].max()
    assert np.allclose(cuts["p_cut"], expect)
    per = a.copy()  # BH within each (modality, outcome) instead
    per["score_q"] = per.groupby(["modality", "outcome_id"])["score_p"].transform(
        lambda p: multipletests(p, method="fdr_bh")[1])
    cuts = fdr_cuts(per, 0.05).set_index(["modality", "outcome_id"])
    assert set(cuts["family"]) == {"per modality and outcome"}
    for (m, o), g in per.groupby(["modality", "outcome_id"]):
        passing = g.loc[g["score_q"] < 0.05, "score_p"]
        assert (np.isnan(cuts.loc[(m, o), "p_cut"]) and passing.empty) or cuts.loc[(m, o), "p_cut"] == passing.max()
        assert cuts.loc[(m, o), "n_pass"] == len(passing) and cuts.loc[(m, o), "n_tests"] == len(g)


def test_forest_rows_rank_first_and_cap_with_both_splits() -> None:
    a = _assoc(2, outcomes=tuple("abcdefg"))
    a["adj_odds_ratio"] = np.exp(a["adj_log_or"])
    both = pd.concat([a, a.assign(split="validation", rank=np.nan, adj_odds_ratio=a["adj_odds_ratio"] * 1.1)])
    f = forest_rows(both, [("report", "feature", 3), ("image", "feature", 7)], max_rows=4)
    assert f["member"].isna().all()
    for (m, fid), g in f.groupby(["modality", "feature_id"]):
        disc = a[(a.modality == m) & (a.feature_id == fid)].assign(u=lambda d: d["rank"].isna())
        want = disc.sort_values(["u", "rank", "score_p"])["outcome_id"].head(4).tolist()
        got = g[g.split == "discovery"].sort_values("row")["outcome_id"].tolist()
        assert got == want and (g["n_outcomes"] == 7).all()
        v = g[g.split == "validation"].set_index("outcome_id")["adj_odds_ratio"]
        d = g[g.split == "discovery"].set_index("outcome_id")["adj_odds_ratio"]
        assert np.allclose(v[d.index], d * 1.1)


def test_pages_are_ranked_or_listed_best_first_and_capped() -> None:
    a = _assoc(3)
    pages = page_features(a, [("image", "feature", 49), ("image", "feature", 49)], max_pages=5)
    ranked = a[a["rank"].notna()].groupby(["modality", "feature_id"])["rank"].min()
    assert len(pages) == len(ranked) + (0 if ("image", 49) in ranked.index else 1)
    assert pages.iloc[0][["modality", "feature_id", "listed"]].tolist() == ["image", 49, True]
    rest = pages.iloc[1:]
    assert rest["best_rank"].is_monotonic_increasing
    assert pages["selected"].sum() == 5 and pages["selected"].iloc[:5].all()
    hits = top_hits(a, 1)
    assert (hits["rank"] == 1).all() and len(hits) == a.groupby(["modality", "outcome_id"])["rank"].min().eq(1).sum()


def _with_family(a: pd.DataFrame) -> pd.DataFrame:
    """`a` plus report family #3 (members 3, 1, 4): ranked 1 for every outcome; its members
    tested, not ranked (as the association stage ranks findings)."""
    a = a.assign(unit="feature")
    fam = a[(a.modality == "report") & (a.feature_id == 3)].assign(unit="family", rank=1.0, score_p=1e-9)
    a.loc[(a.modality == "report") & a.feature_id.isin([1, 3, 4]), "rank"] = np.nan
    return pd.concat([a, fam], ignore_index=True)


def test_family_pages_are_followed_by_their_members() -> None:
    a = _with_family(_assoc(3))
    pages = page_features(a, [], max_pages=1000, members={("report", 3): [3, 1, 4]})
    keys = list(zip(pages["modality"], pages["unit"], pages["feature_id"], strict=True))
    i = keys.index(("report", "family", 3))
    assert keys[i + 1:i + 4] == [("report", "feature", 3), ("report", "feature", 1), ("report", "feature", 4)]
    assert len(set(keys)) == len(keys) and pages["priority"].tolist() == list(range(len(pages)))


def test_forest_of_a_family_nests_members_under_each_outcome() -> None:
    a = _with_family(_assoc(2, outcomes=tuple("abcdefg")))
    a["adj_odds_ratio"] = np.exp(a["adj_log_or"])
    both = pd.concat([a, a.assign(split="validation", rank=np.nan)])
    f = forest_rows(both, [("report", "family", 3), ("report", "feature", 1)], max_rows=9,
                    members={("report", 3): [3, 1]})
    fam = f[(f.unit == "family") & (f.split == "discovery")].sort_values("row")
    # 9 rows // (1 family + 2 members) = 3 outcomes, each: the family, then members 3 and 1
    assert fam["row"].tolist() == list(range(9)) and (fam["n_outcomes"] == 7).all()
    assert [None if pd.isna(x) else int(x) for x in fam["member"]] == [None, 3, 1] * 3
    src = a[(a.split == "discovery") & (a.modality == "report")].set_index(["unit", "feature_id", "outcome_id"])[
        "adj_odds_ratio"].sort_index()
    for r in fam.itertuples():
        unit, fid = ("family", 3) if pd.isna(r.member) else ("feature", int(r.member))
        assert r.adj_odds_ratio == src[(unit, fid, r.outcome_id)]
    outcomes = fam["outcome_id"].tolist()
    assert outcomes[0] == outcomes[1] == outcomes[2] and len(set(outcomes)) == 3
    own = f[(f.unit == "feature") & (f.feature_id == 1)]
    assert own["member"].isna().all() and own["row"].max() == 6  # a feature page: 7 outcomes, no members
