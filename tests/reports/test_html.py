"""Tests of the self-contained HTML report: escaping, no external resources, links that
resolve, sorting script, missing-value rendering, unranked features, and numbers checked
against an independent computation from the 2x2 counts."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from data_contracts.config import ReportConfig
from data_contracts.schemas import ASSOCIATIONS, FEATURE_STATS, INTERPRETATIONS
from reports.html import page_name, render_report

EXTERNAL = re.compile(r"https?://|//cdn|src\s*=\s*[\"']?\s*https?", re.IGNORECASE)
N_FEATURES = 6
OUTCOMES = pd.DataFrame(
    {
        "outcome_id": ["liver_cancer", "heart_failure"],
        "name": ["Primary liver cancer", "First heart failure"],
        "window_years": [4.0, 2.0],
        "n_eligible": [1000, 980],
        "n_cases": [40, 55],
        "n_excluded_followup": [0, 30],
    }
)


def _associations(seed: int = 0) -> pd.DataFrame:
    """2x2 tables with odds ratios and Woolf CIs computed from the counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for modality in ("report", "image"):
        for o in OUTCOMES.itertuples():
            for f in range(N_FEATURES):
                n1 = int(rng.integers(50, 150))
                a = int(rng.integers(1, 30))
                n0, c = o.n_eligible - n1, o.n_cases - a if o.n_cases > a else 1
                b, dd = n1 - a, n0 - c
                orr = a * dd / (b * c)
                se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / dd)
                rows.append(
                    {
                        "modality": modality,
                        "unit": "feature",
                        "feature_id": f,
                        "outcome_id": o.outcome_id,
                        "n_exposed": n1,
                        "n_exposed_cases": a,
                        "n_unexposed": n0,
                        "n_unexposed_cases": c,
                        "p_outcome_exposed": a / n1,
                        "p_outcome_baseline": o.n_cases / o.n_eligible,
                        "odds_ratio": orr,
                        "or_ci_low": orr * np.exp(-1.96 * se),
                        "or_ci_high": orr * np.exp(1.96 * se),
                        "p_value": float(rng.uniform(1e-6, 0.5)),
                        "flag": None,
                    }
                )
    df = pd.DataFrame(rows)
    df["q_value"] = np.minimum(df["p_value"] * 4, 1.0)
    df["rank"] = pd.array([pd.NA] * len(df), dtype="Int32")
    sel = (df["modality"] == "report") & (df["outcome_id"] == "liver_cancer")
    df.loc[sel & (df["feature_id"] == 3), "rank"] = 1
    df.loc[sel & (df["feature_id"] == 1), "rank"] = 2
    df["n_ranked"] = np.where(sel, 2, 0).astype(np.int32)
    df["n_tested"] = np.int32(N_FEATURES)
    # an untested row: NaN statistics must render as "–"
    bad = (df["modality"] == "image") & (df["feature_id"] == 5)
    df.loc[bad, ["odds_ratio", "or_ci_low", "or_ci_high", "p_value", "q_value"]] = np.nan
    df.loc[bad, "flag"] = "feature not testable"
    df["p_bonferroni"] = np.minimum(df["p_value"] * len(df), 1.0)
    df["n_adjusted"] = df["n_exposed"] + df["n_unexposed"]
    df["n_excluded_followup"], df["n_exposed_excluded_followup"] = 7, 2
    df["score_p"], df["score_q"] = df["p_value"], df["q_value"]
    df["score_log_or"] = np.log(df["odds_ratio"])
    df["score_se"] = 0.2
    df["adj_method"] = "logistic"
    df["adj_log_or"] = df["score_log_or"] * 0.9
    df["adj_odds_ratio"] = np.exp(df["adj_log_or"])
    df["adj_or_ci_low"], df["adj_or_ci_high"] = df["adj_odds_ratio"] * 0.7, df["adj_odds_ratio"] * 1.4
    df["adj_p_value"] = df["p_value"]
    df["replication_p_adj"] = np.where(df["rank"].notna(), 0.01, np.nan)
    df["replicated"] = pd.array(np.where(df["rank"].notna(), True, None), dtype="boolean")
    df[["sd_odds_ratio", "sd_ci_low", "sd_ci_high", "sd_p_value"]] = np.nan  # option or_per_sd off
    df["sd_flag"] = None
    # the validation half is in the artifact too; the report shows discovery rows only
    val = df.assign(split="validation")
    val["rank"] = pd.array([pd.NA] * len(val), dtype="Int32")
    df = pd.concat([df.assign(split="discovery"), val], ignore_index=True)
    return df[ASSOCIATIONS.schema.names]


def _interpretations() -> pd.DataFrame:
    rows = []
    for modality in ("report", "image"):
        for f in range(N_FEATURES):
            rows.append(
                {
                    "modality": modality,
                    "unit": "feature",
                    "feature_id": f,
                    "label": "cirrhotic liver; <b>varices</b>" if f == 3 else f"concept {f}",
                    "top_terms": ["cirrhotic liver", "varices", "no ascites"] if f == 3 else [],
                    "term_scores": [5.1, 4.2, 3.0] if f == 3 else [],
                    "n_train_top": 50,
                    "n_train_control": 150,
                    "n_heldout_top": 50,
                    "n_heldout_top_hits": 43,
                    "n_heldout_control": 150,
                    "n_heldout_control_hits": 7,
                    "heldout_balanced_accuracy": 0.9066666,
                    "ba_ci_low": 0.84, "ba_ci_high": 0.95,
                    "baseline_label": "concept 9", "baseline_balanced_accuracy": 0.48,
                    "method": "keywords", "judge": "keywords",
                    "named_from": "the feature's own report texts", "n_candidates": 1,
                    "decile_recall": [0.9] * 10,
                    "flag": None,
                }
            )
    return pd.DataFrame(rows).reindex(columns=INTERPRETATIONS.schema.names)


def _stats() -> pd.DataFrame:
    rows = []
    for _ in ("report", "image"):
        for f in range(N_FEATURES + 2):
            dead = f >= N_FEATURES
            rows.append(
                {
                    "unit": "feature",
                    "feature_id": f,
                    "n_studies": 1000,
                    "n_active": 0 if dead else 300,
                    "frac_active": 0.0 if dead else 0.3,
                    "mean_active": None if dead else 1.5,
                    "max_value": None if dead else 4.0,
                    "threshold": None if dead else 2.0,
                    "cohort_size": 0 if dead else 100,
                    "testable": not dead,
                    "flag": "dead: never fires" if dead else None,
                    "family_id": None,
                }
            )
    return pd.DataFrame(rows)[FEATURE_STATS.schema.names].assign(
        modality=["report"] * (N_FEATURES + 2) + ["image"] * (N_FEATURES + 2)
    )


def _top_reports() -> pd.DataFrame:
    rows = []
    for modality in ("report", "image"):
        for f in range(N_FEATURES):
            for r in range(1, 13):
                text = f"FINDINGS: Cirrhotic liver with varices. Report {r}."
                if r == 1:
                    text = "<script>alert(1)</script> see http://evil.example/x.js & //cdn.x"
                if r == 2:
                    text = None
                rows.append(
                    {
                        "modality": modality,
                        "unit": "feature",
                        "feature_id": f,
                        "study_id": f"S{f}_{r}",
                        "rank": r,
                        "value": 10.0 - r,
                        "report_text": text,
                    }
                )
    return pd.DataFrame(rows)


def _roundtrip(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """As the report task reads it: parquet types (nullable ints -> float, lists -> arrays)."""
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False).to_pandas()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    cfg = ReportConfig(top_per_outcome=3, n_top_reports=8, title="Test report")
    paths = render_report(
        out,
        _roundtrip(_associations(), ASSOCIATIONS.schema),
        _roundtrip(_interpretations(), INTERPRETATIONS.schema),
        _stats(),
        _top_reports(),
        OUTCOMES,
        {"run": "unit <test>", "created": "2026-01-01"},
        cfg,
    )
    return out, paths


def _text(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def test_written_paths_and_links_resolve(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    assert paths[0] == out / "index.html" and all(p.exists() for p in paths)
    for p in paths:
        for href in re.findall(r'href="([^"]+)"', _text(p)):
            if not href.startswith("#"):
                assert (p.parent / href).resolve().exists(), (p.name, href)
    # ranked features and each outcome's top 3 have pages
    assert (out / "features" / page_name("report", "feature", 3)).exists()
    assert (out / "features" / page_name("report", "feature", 1)).exists()
    assert len(paths) - 1 >= 2


def test_report_text_is_escaped(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    page = _text(paths[0].parent / "features" / page_name("report", "feature", 3))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;varices&lt;/b&gt;" in page and "unit &lt;test&gt;" in page
    for p in paths:
        assert "<script>alert" not in _text(p) and "<b>varices" not in _text(p)


def test_no_external_resources(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        assert not EXTERNAL.search(_text(p)), p.name
        assert "<link" not in _text(p) and "@import" not in _text(p)


def test_sorting_script_and_tables(rendered: tuple[Path, list[Path]]) -> None:
    index = _text(rendered[1][0])
    assert '<table id="all-rows" class="sortable compact">' in index
    assert "querySelectorAll('table.sortable')" in index and "localeCompare" in index
    n_rows = len(re.findall(r"<tr", index.split('id="all-rows"')[1].split("</table>")[0]))
    a = _associations()
    assert n_rows == 1 + int((a["split"] == "discovery").sum())  # validation rows: in the artifact only


def test_missing_values_render_as_dash(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        visible = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", _text(p), flags=re.S)
        assert not re.search(r"\bnan\b|>None<|\bNaT\b|&lt;NA&gt;", visible, re.IGNORECASE), p.name
    index = _text(paths[0])
    row = next(r for r in index.split("<tr") if "image #5" in r and "feature not testable" in r)
    assert row.count(">–<") >= 4  # rank, OR (95% CI), p, q


def test_unranked_feature_page_renders(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    # image features are never ranked, yet each outcome's top rows link to pages
    pages = sorted((out / "features").glob("image_*.html"))
    assert pages
    text = _text(pages[0])
    assert "Associations" in text and '<td class="num" data-v="">–</td>' in text


def test_numbers_match_independent_computation(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    a = _associations()
    r = a[(a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")].iloc[0]
    p_exp = r.n_exposed_cases / r.n_exposed
    share = r.n_exposed / (r.n_exposed + r.n_unexposed)
    index = _text(out / "index.html")
    top = index.split('id="o-liver_cancer"')[1].split("</table>")[0]
    first = top.split("<tbody>")[1].split("</tr>")[0]
    assert f"1 of {N_FEATURES}" in first and "report #3" in first  # rank r of n tested
    assert f"{r.adj_odds_ratio:.3g} ({r.adj_or_ci_low:.3g}–{r.adj_or_ci_high:.3g})" in first
    assert "<td>yes</td>" in first  # replicated
    assert f"{100 * p_exp:.1f}%" in first and f"({100 * share:.1f}%)" in first
    assert f"{r.odds_ratio:.3g} ({r.or_ci_low:.3g}–{r.or_ci_high:.3g})" in first
    assert "0.91" in first and "43/50 vs 7/150" in first
    page = _text(out / "features" / page_name("report", "feature", 3))
    assert "43/50</b> held-out top reports vs <b>7/150" in page
    assert "95% CI 0.84–0.95" in page and "scores 0.48 on the same reports" in page
    assert page.count('<article class="report">') == 8
    assert "<mark>cirrhotic liver</mark>" in page.lower() or "<mark>Cirrhotic liver</mark>" in page
    assert "(no report text)" in page


def test_untestable_features_listed(rendered: tuple[Path, list[Path]]) -> None:
    index = _text(rendered[1][0])
    assert "<details><summary>report: 2 of 8 features not testable</summary>" in index
    assert "dead: never fires" in index


def test_empty_associations_still_render(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=ASSOCIATIONS.schema.names)
    paths = render_report(
        tmp_path,
        empty,
        _interpretations().iloc[:0],
        _stats(),
        _top_reports().iloc[:0],
        OUTCOMES,
        {},
        ReportConfig(),
    )
    assert paths == [tmp_path / "index.html"]
    assert "No feature could be tested" in _text(paths[0])


def test_all_rows_table_is_capped(tmp_path: Path) -> None:
    assoc = _roundtrip(_associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, _roundtrip(_interpretations(), INTERPRETATIONS.schema),
                  _stats(), _top_reports(), OUTCOMES, {"run": "t"}, ReportConfig(max_table_rows=5))
    html = _text(tmp_path / "index.html")
    table = html.split('id="all-rows"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 5  # header + capped rows
    n_disc = int((assoc["split"] == "discovery").sum())  # the report shows the discovery rows
    assert f"5 of {n_disc}" in html


def test_survival_section_renders_curve_and_at_risk() -> None:
    from models.stats.survival import km_curve
    from reports.survival import survival_section

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"time_days": rng.uniform(10, 1461, 200), "event": rng.uniform(size=200) < 0.3,
                      "exposed": (np.arange(200) < 60).astype(int)})
    curve = km_curve(d, 4 * 365.25).assign(modality="report", unit="feature", feature_id=3,
                                           outcome_id="liver_cancer", split="discovery")
    surv = pd.DataFrame([{"modality": "report", "unit": "feature", "feature_id": 3, "outcome_id": "liver_cancer",
                          "split": "discovery", "rank": 1, "hazard_ratio": 2.5, "hr_ci_low": 1.5,
                          "hr_ci_high": 4.0, "cuminc_exposed": 0.31, "cuminc_exposed_low": 0.2,
                          "cuminc_exposed_high": 0.4, "cuminc_unexposed": 0.1, "cuminc_unexposed_low": 0.05,
                          "cuminc_unexposed_high": 0.15, "logrank_p": 1e-4, "flag": None}])
    html = survival_section(surv, curve, "liver_cancer", lambda m, u, f: f"{m} #{f}")
    assert "<svg" in html and html.count("<polyline") == 2
    n0 = int((d.loc[d.exposed == 1, "time_days"] >= 365.25).sum())
    assert re.search(rf'data-v="{n0}(\.0)?">{n0}<', html) and "2.5 (1.5–4)" in html and "31.0%" in html
    assert survival_section(surv, curve, "heart_failure", str) == ""


def test_or_per_sd_column_only_when_present(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    assert "OR per SD" not in _text(rendered[1][0])
    a = _associations()
    hit = (a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")
    a.loc[hit, ["sd_odds_ratio", "sd_ci_low", "sd_ci_high"]] = [1.87, 1.41, 2.49]
    render_report(tmp_path, _roundtrip(a, ASSOCIATIONS.schema), _roundtrip(_interpretations(), INTERPRETATIONS.schema),
                  _stats(), _top_reports(), OUTCOMES, {"run": "t"}, ReportConfig(top_per_outcome=3))
    top = _text(tmp_path / "index.html").split('id="o-liver_cancer"')[1].split("</table>")[0]
    assert "<th" in top and "OR per SD (95% CI)" in top
    first = top.split("<tbody>")[1].split("</tr>")[0]
    assert "1.87 (1.41–2.49)" in first and "report #3" in first


def test_family_is_one_row_with_its_members_under_it(tmp_path: Path) -> None:
    """A ranked family (report family #3: features 3 and 1) heads the outcome's table and
    its member features (tested, not ranked: parts of the finding) are listed under it,
    parent first; its page lists the members with how they joined."""
    a = _associations()
    disc = (a.split == "discovery") & (a.modality == "report")
    fam = a[disc & (a.feature_id == 3)].assign(unit="family")
    a.loc[disc & a.feature_id.isin([1, 3]), "rank"] = pd.NA
    fam.loc[fam.outcome_id == "liver_cancer", "rank"] = 1
    a = pd.concat([a, fam], ignore_index=True)[ASSOCIATIONS.schema.names]
    interp = _interpretations()
    interp = pd.concat([interp, interp[(interp.modality == "report") & (interp.feature_id == 3)].assign(
        unit="family", label="cirrhosis (whole)")], ignore_index=True)
    stats = _stats()
    stats = pd.concat([stats, stats[(stats.modality == "report") & (stats.feature_id == 3)].assign(unit="family")],
                      ignore_index=True)
    families = pd.DataFrame([{"modality": "report", "family_id": 3, "parent_feature": 3, "n_members": 2,
                              "members": [3, 1], "member_link": ["parent", "nested"],
                              "member_containment": [1.0, 0.8], "member_cosine": [1.0, 0.2], "n_active": 320,
                              "parent_coverage": 0.94, "mean_containment": 0.8, "mean_cosine": 0.2}])
    render_report(tmp_path, _roundtrip(a, ASSOCIATIONS.schema), _roundtrip(interp, INTERPRETATIONS.schema), stats,
                  _top_reports(), OUTCOMES, {"run": "t"}, ReportConfig(top_per_outcome=3), families=families)
    top = _text(tmp_path / "index.html").split('id="o-liver_cancer"')[1].split("</table>")[0]
    rows = top.split("<tbody>")[1].split("</tr>")[:3]
    assert "report family #3" in rows[0] and "2 features" in rows[0] and "cirrhosis (whole)" in rows[0]
    assert "1 of" in rows[0]
    assert 'class="unranked member"' in rows[1] and "↳" in rows[1] and "report #3" in rows[1]
    assert 'class="unranked member"' in rows[2] and "report #1" in rows[2]
    assert top.count("report #3<") == 2 and top.count("report #1<") == 2  # member list, member row
    page = _text(tmp_path / "features" / page_name("report", "family", 3))
    assert "Member features" in page and "nested" in page and "80.0%" in page
    member_page = _text(tmp_path / "features" / page_name("report", "feature", 1))
    assert "Member of" in member_page and page_name("report", "family", 3) in member_page


def test_feature_page_rows_are_capped_ranked_first(tmp_path: Path) -> None:
    assoc = _roundtrip(_associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, _roundtrip(_interpretations(), INTERPRETATIONS.schema),
                  _stats(), _top_reports(), OUTCOMES, {"run": "t"}, ReportConfig(feature_page_rows=1))
    page = _text(tmp_path / "features" / page_name("report", "feature", 3))
    table = page.split("<h2>Associations</h2>", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 1  # header + the one row shown
    assert "Primary liver cancer" in table  # the ranked outcome wins the only place
    assert "1 of 2 outcomes" in page
    uncapped = tmp_path / "all"
    render_report(uncapped, assoc, _roundtrip(_interpretations(), INTERPRETATIONS.schema),
                  _stats(), _top_reports(), OUTCOMES, {"run": "t"}, ReportConfig(feature_page_rows=2))
    full = _text(uncapped / "features" / page_name("report", "feature", 3))
    assert " of 2 outcomes" not in full
    body = full.split("<h2>Associations</h2>", 1)[1].split("</table>", 1)[0]
    assert body.index("Primary liver cancer") < body.index("First heart failure")  # the outcomes' order


def test_methods_table_is_printed_as_given(tmp_path: Path) -> None:
    from data_contracts.config import AssociationConfig
    from models.stats.methods import association_methods

    methods = association_methods(AssociationConfig(firth=True, fdr_family="modality_outcome"))
    render_report(tmp_path, _roundtrip(_associations(), ASSOCIATIONS.schema),
                  _roundtrip(_interpretations(), INTERPRETATIONS.schema), _stats(), _top_reports(), OUTCOMES,
                  {}, ReportConfig(), methods=methods)
    page = _text(tmp_path / "index.html")
    for topic, statement in methods.itertuples(index=False):
        assert f"<dt>{topic}</dt><dd>{html.escape(statement, quote=True)}</dd>" in page
    assert "profile penalised likelihood" in page and "each (half, modality, outcome)" in page


def test_outcome_table_counts_short_followup(rendered: tuple[Path, list[Path]]) -> None:
    """The studies left out for short follow-up are shown, and the baseline is over the
    studies analysed: heart failure 55 / (980 - 30) = 5.79%, not 55 / 980 = 5.61%."""
    html = _text(rendered[0] / "index.html")
    section = html[html.index("<h2>Outcomes</h2>"):]
    section = section[:section.index("</table>")]
    assert "Short follow-up, left out" in section
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", section, re.S) if "heart_failure" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[3:6] == ["980", "30", "55"], cells
    assert cells[6].startswith("5.79") or cells[6].startswith("5.8"), cells
    assert "30 without the outcome left out for follow-up shorter than the window" in html
