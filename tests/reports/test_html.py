"""Tests of the HTML report's files: escaping, no external resources, shared assets, links
that resolve, missing values, figures present, small-cell suppression and identifiers,
size caps, and numbers checked against an independent computation from the 2x2 counts.
(The browser test opens the same report in Chromium.)"""

from __future__ import annotations

import re
from html import escape, unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import FeatureRef, ReportConfig
from data_contracts.report_tables import ReportTables
from data_contracts.schemas import ASSOCIATIONS, INTERPRETATIONS
from models.figures.build import report_tables
from reports.cells import SmallCells
from reports.html import page_name, render_report
from tests.reports import fixtures as fx

LISTED = (FeatureRef(modality="image", feature_id=3),)  # image features never rank here: listed for a page


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report") / "report"
    return out, fx.render_fixture(out, ReportConfig(top_per_outcome=3, title="Test report", pages=LISTED))


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same report with suppression off (small_cell 0) and identifiers shown."""
    out = tmp_path_factory.mktemp("exact") / "report"
    fx.render_fixture(out, ReportConfig(top_per_outcome=3, small_cell=0, show_ids=True, pages=LISTED))
    return out


def page_of(modality: str, fid: int) -> str:
    """A feature's page file name (families: page_name(modality, "family", id))."""
    return page_name(modality, "feature", fid)


def _text(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def _visible(html: str) -> str:
    """Text as a reader sees it (tags dropped, entities decoded)."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_written_paths_and_links_resolve(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    assert paths[0] == out / "index.html" and all(p.exists() for p in paths)
    assert (out / "assets" / "report.css").is_file() and (out / "assets" / "report.js").is_file()
    for p in paths:
        for href in re.findall(r'(?:href|src)="([^"#][^"]*)"', _text(p)):
            if not href.startswith("data:image/png;base64,"):
                assert (p.parent / href).resolve().exists(), (p.name, href)
    # pages: the ranked features and the listed one, nothing else
    assert sorted(p.name for p in paths[1:]) == sorted(page_of(m, f) for m, f in [("report", 3), ("report", 1),
                                                                             ("image", 3)])


def test_report_text_is_escaped(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    page = _text(paths[0].parent / "features" / page_of("report", 3))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;varices&lt;/b&gt;" in page and "unit &lt;test&gt;" in page
    for p in paths:
        assert "<script>alert" not in _text(p) and "<b>varices" not in _text(p)


def test_no_external_resources_and_no_inline_code(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        t = _text(p)
        assert not fx.EXTERNAL.search(t), p.name
        assert "@import" not in t and "<style" not in t and " style=" not in t
        links = re.findall(r"<link[^>]*>", t)
        assert links == [f'<link rel="stylesheet" href="{"../" if p.parent.name == "features" else ""}'
                         'assets/report.css">']
        assert re.findall(r"<script[^>]*>", t) == [f'<script src="{"../" if p.parent.name == "features" else ""}'
                                                  'assets/report.js">']
        assert "Content-Security-Policy" in t and "default-src 'none'" in t


def test_sorting_script_and_tables(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    index = _text(paths[0])
    assert '<table id="all-rows" class="sortable compact">' in index and 'class="filter"' in index
    js = _text(out / "assets" / "report.js")
    assert "querySelectorAll('table.sortable')" in js and "localeCompare" in js
    table = index.split('id="all-rows"')[1].split("</table>")[0]
    a = fx.associations()
    assert table.count("<tr") == 1 + int((a["split"] == "discovery").sum())  # validation rows: artifact only
    assert "<th>Replicated</th>" in table


def test_index_and_feature_figures(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    index = _text(paths[0])
    assert 'aria-label="Manhattan plot' in index and 'aria-label="Volcano plot' in index
    man = index.split('aria-label="Manhattan plot')[1].split("</svg>")[0]
    assert man.count("<circle") == int(fx.associations().query("split == 'discovery'")["score_p"].notna().sum())
    assert 'href="features/report_3.html"' in man and ">report #3</text>" in man  # rank 1: linked and labelled
    assert 'class="cut' in man and 'href="#o-liver_cancer"' in man
    page = _text(out / "features" / page_of("report", 3))
    for label in ("activation histogram", "forest plot of adjusted odds ratios", "cumulative incidence"):
        assert f'aria-label="{label}"' in page, label
    assert "<th>At risk</th>" in page
    img = _text(out / "features" / page_of("image", 3))
    assert img.count('src="data:image/png;base64,') == 2 * 5  # 4 top + 2 controls, one without an image
    assert "image unavailable (no image)" in img and "Mid-axial" in img
    assert "CT slices" not in page  # report features: no thumbnails


def test_missing_values_render_as_dash(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        visible = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", _text(p), flags=re.S)
        assert not re.search(r"\bnan\b|>None<|\bNaT\b|&lt;NA&gt;", visible, re.IGNORECASE), p.name
    index = _text(paths[0])
    row = next(r for r in index.split("<tr") if "image #5" in r and "feature not testable" in r)
    assert row.count(">–<") >= 4  # rank, OR (95% CI), p, q


def test_small_counts_are_suppressed_everywhere(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    for p in paths:
        t = _text(p)
        for n in re.findall(r'<span class="n">([^<]*)</span>', t):
            assert not re.fullmatch(r"[1-9]|10", n), (p.name, n)
        for v in re.findall(r'data-v="([^"]*)"><span class="n">', t):  # nor do the count cells' sort keys
            assert not re.fullmatch(r"[1-9](\.0)?", v), (p.name, v)
    page = _text(out / "features" / page_of("report", 3))
    assert ">39/50 vs <11/150" in _visible(page) and "≈0.9" in page  # 43/50 vs 7/150 held out
    km = page.split("<h2>Cumulative incidence</h2>")[1].split("<h2>")[0]
    assert "suppressed (&lt;11 events)" in km
    assert "km-exposed" not in km and "km-unexposed" in km  # 5 exposed events: no exposed curve


def test_no_identifiers_unless_asked(rendered: tuple[Path, list[Path]], exact: Path) -> None:
    _, paths = rendered
    for p in paths:
        assert not re.search(r"\bS\d+_\d+\b|IMG-", _text(p)), p.name
    shown = _text(exact / "features" / page_of("report", 3)) + _text(exact / "features" / page_of("image", 3))
    assert "study S3_3" in shown and "study IMG-" in shown


def test_numbers_match_independent_computation(exact: Path) -> None:
    a = fx.associations()
    r = a[(a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")].iloc[0]
    p_exp = r.n_exposed_cases / r.n_exposed
    share = r.n_exposed / (r.n_exposed + r.n_unexposed)
    index = _text(exact / "index.html")
    top = index.split('id="o-liver_cancer"')[1].split("</table>")[0]
    first = _visible(top.split("<tbody>")[1].split("</tr>")[0])
    assert f"1 of {fx.N_FEATURES}" in first and "report #3" in first  # rank r of n tested
    assert f"{r.adj_odds_ratio:.3g} ({r.adj_or_ci_low:.3g}–{r.adj_or_ci_high:.3g})" in first
    assert "yes" in first  # replicated
    assert f"{100 * p_exp:.1f}%" in first and f"({100 * share:.1f}%)" in first
    assert f"{r.odds_ratio:.3g} ({r.or_ci_low:.3g}–{r.or_ci_high:.3g})" in first
    assert "0.91" in first and "43/50 vs 7/150" in first
    page = _text(exact / "features" / page_of("report", 3))
    assert "0.91 [0.84–0.95]" in _visible(page) and "scores 0.48 on the same reports" in page
    assert page.count('<article class="report">') == 8
    assert "<mark>cirrhotic liver</mark>" in page.lower()
    assert "(no report text)" in page


def test_untestable_features_listed(rendered: tuple[Path, list[Path]]) -> None:
    index = _text(rendered[1][0])
    assert "<details><summary>report: 2 of 8 features not testable</summary>" in index
    assert "dead: never fires" in index


def test_empty_associations_still_render(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=ASSOCIATIONS.schema.names)
    tables = report_tables(empty, ReportConfig(), 0.05)
    paths = render_report(tmp_path, empty, fx.interpretations().iloc[:0], fx.stats(), fx.top_reports().iloc[:0],
                          fx.OUTCOMES, {}, ReportConfig(), tables=tables)
    assert paths == [tmp_path / "index.html"]
    assert "No feature could be tested" in _text(paths[0])


def test_all_rows_table_is_capped(tmp_path: Path) -> None:
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema),
                  fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"}, ReportConfig(max_table_rows=5))
    html = _text(tmp_path / "index.html")
    table = html.split('id="all-rows"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 5  # header + capped rows
    n_disc = int((assoc["split"] == "discovery").sum())  # the report shows the discovery rows
    assert f"5 of {n_disc}" in html


def test_size_caps_drop_weakest_pages_and_trim_evidence(tmp_path: Path) -> None:
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    reports = fx.top_reports().assign(report_text="x" * 30_000)
    cfg = ReportConfig(max_page_kb=40, max_report_chars=30_000, max_total_mb=0.08, pages=LISTED)
    tables = report_tables(assoc, cfg, 0.05)
    paths = render_report(tmp_path, assoc, fx.interpretations(), fx.stats(), reports, fx.OUTCOMES, {}, cfg,
                          tables=tables)
    pages = paths[1:]
    assert all(p.stat().st_size <= 40_000 for p in pages)
    assert "Evidence trimmed" in _text(pages[0])
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= 80_000
    order = tables.pages.sort_values("priority")
    assert [p.name for p in pages] == [page_of(m, f) for m, f in zip(order["modality"], order["feature_id"],
                                                                        strict=True)][: len(pages)]
    assert len(pages) < len(order) and "report size limit" in _text(paths[0])


def test_survival_section_renders_curve_and_at_risk() -> None:
    from models.stats.survival import km_curve
    from reports.survival import survival_section

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"time_days": rng.uniform(10, 1461, 200), "event": rng.uniform(size=200) < 0.3,
                      "exposed": (np.arange(200) < 60).astype(int)})
    curve = km_curve(d, 4 * 365.25).assign(modality="report", feature_id=3, outcome_id="liver_cancer",
                                           split="discovery")
    surv = pd.DataFrame([{"modality": "report", "feature_id": 3, "outcome_id": "liver_cancer",
                          "split": "discovery", "rank": 1, "hazard_ratio": 2.5, "hr_ci_low": 1.5,
                          "hr_ci_high": 4.0, "n_events": int(d.event.sum()),
                          "n_exposed_events": int(d.event[d.exposed == 1].sum()), "cuminc_exposed": 0.31,
                          "cuminc_exposed_low": 0.2, "cuminc_exposed_high": 0.4, "cuminc_unexposed": 0.1,
                          "cuminc_unexposed_low": 0.05, "cuminc_unexposed_high": 0.15, "logrank_p": 1e-4,
                          "flag": None}])
    html = survival_section(surv, curve, "liver_cancer", lambda m, u, f: f"{m} #{f}", SmallCells(10))
    assert "<svg" in html and html.count("<polyline") == 2 * (1 + ("aj_cum_incidence" in curve.columns))
    n0 = int((d.loc[d.exposed == 1, "time_days"] >= 365.25).sum())
    assert re.search(rf'data-v="{n0}(\.0)?"><span class="n">{n0}<', html) and "2.5 (1.5–4)" in html
    assert "31.0%" in html
    assert survival_section(surv, curve, "heart_failure", str, SmallCells(10)) == ""


def test_or_per_sd_column_only_when_present(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    assert "OR per SD" not in _text(rendered[1][0])
    a = fx.associations()
    hit = (a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")
    a.loc[hit, ["sd_odds_ratio", "sd_ci_low", "sd_ci_high"]] = [1.87, 1.41, 2.49]
    render_report(tmp_path, fx.roundtrip(a, ASSOCIATIONS.schema), fx.roundtrip(fx.interpretations(),
                  INTERPRETATIONS.schema), fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"},
                  ReportConfig(top_per_outcome=3), tables=ReportTables())
    top = _text(tmp_path / "index.html").split('id="o-liver_cancer"')[1].split("</table>")[0]
    assert "<th" in top and "OR per SD (95% CI)" in top
    first = top.split("<tbody>")[1].split("</tr>")[0]
    assert "1.87 (1.41–2.49)" in first and "report #3" in first


def test_columns_of_other_stages_render_when_present(tmp_path: Path) -> None:
    """Aalen-Johansen beside 1 - KM, the associations' methods statement, and studies left
    out for short follow-up (with the baseline over the rest), all under suppression."""
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    surv, curves = fx.survival_frames()
    surv = surv.assign(aj_cuminc_exposed=0.07, aj_cuminc_unexposed=0.11)
    curves = curves.assign(aj_cum_incidence=curves["cum_incidence"] * 0.9)
    outcomes = fx.OUTCOMES.assign(n_excluded_followup=[200, 5])
    methods = pd.DataFrame({"topic": ["BH family"], "statement": ["per split, all pairs <pooled>"]})
    cfg = ReportConfig(top_per_outcome=3)
    render_report(tmp_path, assoc, fx.interpretations(), fx.stats(), fx.top_reports(), outcomes, {}, cfg, surv,
                  curves, report_tables(assoc, cfg, 0.05), methods)
    index = _text(tmp_path / "index.html")
    assert "<dt>BH family</dt><dd>per split, all pairs &lt;pooled&gt;</dd>" in index
    row = _visible(index.split("<h2>Outcomes</h2>")[1].split("</tr>")[1])
    assert f"{100 * 40 / 800:.1f}%" in row and "200" in row  # 40 cases / (1000 eligible - 200 left out)
    row2 = _visible(index.split("<h2>Outcomes</h2>")[1].split("</tr>")[2])
    assert "<11" in row2 and "5" not in row2.split("%")[1]  # 5 left out: suppressed
    block = index.split("<h3>Time to event, top hits</h3>")[1]
    assert "Aalen–Johansen exposed / unexposed" in block and "Cause-specific HR" in block
    assert "&lt;11 events / 11.0%" in block  # exposed AJ suppressed (5 events), unexposed shown
    assert 'class="km-unexposed aj"' in block and 'class="km-exposed' not in block


def test_same_inputs_give_the_same_bytes(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, paths = rendered
    again = fx.render_fixture(tmp_path / "report", ReportConfig(top_per_outcome=3, title="Test report", pages=LISTED))
    assert [p.relative_to(tmp_path / "report") for p in again] == [p.relative_to(out) for p in paths]
    for a, b in zip(paths, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_methods_table_is_printed_as_given(tmp_path: Path) -> None:
    from data_contracts.config import AssociationConfig
    from models.stats.methods import association_methods

    methods = association_methods(AssociationConfig(firth=True, fdr_family="modality_outcome"))
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema), fx.stats(),
                  fx.top_reports(), fx.OUTCOMES, {}, ReportConfig(), methods=methods)
    page = _text(tmp_path / "index.html")
    for topic, statement in methods.itertuples(index=False):
        assert f"<dt>{topic}</dt><dd>{escape(statement, quote=True)}</dd>" in page
    assert "profile penalised likelihood" in page and "each (half, modality, outcome)" in page


def _family_inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The fixtures plus report family #3 (features 3 and 1): ranked 1 for liver cancer,
    its members tested, not ranked (parts of the finding)."""
    a = fx.associations()
    disc = (a.split == "discovery") & (a.modality == "report")
    fam = a[disc & (a.feature_id == 3)].assign(unit="family", rank=np.nan)
    a.loc[disc & a.feature_id.isin([1, 3]), "rank"] = np.nan
    fam.loc[fam.outcome_id == "liver_cancer", "rank"] = 1
    a = pd.concat([a.assign(unit="feature"), fam], ignore_index=True)
    interp = fx.interpretations()
    interp = pd.concat([interp, interp[(interp.modality == "report") & (interp.feature_id == 3)].assign(
        unit="family", label="cirrhosis (whole)")], ignore_index=True)
    stats = fx.stats()
    stats = pd.concat([stats.assign(unit="feature"),
                       stats[(stats.modality == "report") & (stats.feature_id == 3)].assign(unit="family")],
                      ignore_index=True)
    families = pd.DataFrame([{"family_id": 3, "parent_feature": 3, "n_members": 2, "members": [3, 1],
                              "member_link": ["parent", "nested"], "member_containment": [1.0, 0.8],
                              "member_cosine": [1.0, 0.2], "n_active": 320, "parent_coverage": 0.94,
                              "mean_containment": 0.8, "mean_cosine": 0.2}])
    return fx.roundtrip(a, ASSOCIATIONS.schema), fx.roundtrip(interp, INTERPRETATIONS.schema), stats, families


def test_family_is_one_row_with_its_members_under_it(tmp_path: Path) -> None:
    """A ranked family (report family #3: features 3 and 1) heads the outcome's table with
    its member features listed under it, parent first; the plots draw it as a diamond with
    its members tied to it; its page lists the members with how they joined and nests them
    under each outcome of its forest plot; a member's page names its family."""
    from models.figures.build import Families

    a, interp, stats, families = _family_inputs()
    cfg = ReportConfig(top_per_outcome=3)
    tables = report_tables(a, cfg, 0.05, families={"report": Families(families)})
    render_report(tmp_path, a, interp, stats, fx.top_reports(), fx.OUTCOMES, {"run": "t"}, cfg, tables=tables,
                  families=families.assign(modality="report"))
    index = _text(tmp_path / "index.html")
    top = index.split('id="o-liver_cancer"')[1].split("</table>")[0]
    rows = top.split("<tbody>")[1].split("</tr>")[:3]
    assert "report family #3" in rows[0] and "2 features" in rows[0] and "cirrhosis (whole)" in rows[0]
    assert "1 of" in rows[0]
    assert 'class="unranked member"' in rows[1] and "↳" in rows[1] and "report #3" in rows[1]
    assert 'class="unranked member"' in rows[2] and "report #1" in rows[2]
    assert top.count("report #3<") == 2 and top.count("report #1<") == 2  # member list, member row
    assert 'class="m0 hit fam"' in index or 'class="m1 hit fam"' in index  # the family's diamond
    assert 'class="tie"' in index  # members tied to it in the Manhattan plot
    page = _text(tmp_path / "features" / page_name("report", "family", 3))
    assert "Member features" in page and "nested" in page and "80.0%" in page
    assert "↳ feature #1" in page and "↳ feature #3" in page  # forest: members under each outcome
    member_page = _text(tmp_path / "features" / page_name("report", "feature", 1))
    assert "Member of" in member_page and page_name("report", "family", 3) in member_page


def test_outcome_table_counts_short_followup(rendered: tuple[Path, list[Path]]) -> None:
    """The studies left out for short follow-up are shown, and the baseline is over the
    studies analysed: heart failure 55 / (980 - 30) = 5.79%, not 55 / 980 = 5.61%."""
    html = _text(rendered[0] / "index.html")
    section = html[html.index("<h2>Outcomes</h2>"):]
    section = section[:section.index("</table>")]
    assert "Short follow-up, left out" in section
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", section, re.S) if "heart_failure" in r)
    cells = [_visible(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[3:6] == ["980", "30", "55"], cells
    assert cells[6] == "5.8%", cells  # 55 / 980 would be 5.6%
    assert "30</span> without the outcome left out for follow-up shorter than the window" in html


def test_feature_page_rows_are_capped_ranked_first(tmp_path: Path) -> None:
    """report.feature_page_rows caps a page's outcome rows (ranked first) and says so."""
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    interp = fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema)
    render_report(tmp_path, assoc, interp, fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"},
                  ReportConfig(feature_page_rows=1))
    page = _text(tmp_path / "features" / page_of("report", 3))
    table = page.split("<h2>Associations</h2>", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 1  # header + the one row shown
    assert "Primary liver cancer" in table  # the ranked outcome wins the only place
    assert "1 of 2 outcomes" in page
    uncapped = tmp_path / "all"
    render_report(uncapped, assoc, interp, fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"},
                  ReportConfig(feature_page_rows=2))
    full = _text(uncapped / "features" / page_of("report", 3))
    assert " of 2 outcomes" not in full
    body = full.split("<h2>Associations</h2>", 1)[1].split("</table>", 1)[0]
    assert body.index("Primary liver cancer") < body.index("First heart failure")


def test_extreme_log_odds_ratio_renders_as_infinity(tmp_path: Path) -> None:
    """A separated table's adjusted log-OR can be in the thousands (seen at 200,000
    studies): the volcano tooltip shows ∞ instead of the report stage failing."""
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    ranked = assoc.index[(assoc["split"] == "discovery") & (assoc["rank"] == 1)][0]
    assoc.loc[ranked, "adj_log_or"] = 1500.0
    paths = render_report(tmp_path, assoc, fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema),
                          fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"}, ReportConfig(),
                          tables=report_tables(assoc, ReportConfig(), 0.05))
    assert "adj. OR ∞" in _visible(_text(paths[0]))
